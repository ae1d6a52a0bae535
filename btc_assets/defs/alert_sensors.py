"""The whale watch and the alert notifier: the two sensors of the alert history.

- ``whale_watch``: a run of ``whale_alerts`` for today every ``BTC_ASSETS_WHALE_POLL_SECONDS``,
  skipped while the previous one is still going (two runs would read and rewrite the same
  day file).
- ``alert_notifier``: every minute, the alerts of ``signals`` and ``whale_alerts`` from the
  last ``BTC_ASSETS_ALERT_MAX_AGE_MINUTES`` are read from the lake through the gate (a day
  whose quality check failed, that does not verify or that another env wrote is not read)
  and those at or above ``BTC_ASSETS_ALERT_MIN_SEVERITY`` not sent yet go to Telegram, once
  each (``alerts/ledger.py`` remembers what was sent, across ticks, re-runs and restarts).
  A backfill writes old alerts: older than the age limit, they are never sent. Delivery
  lives in a sensor, not in the assets, so a Telegram outage never fails a data run, and the
  next tick retries what was not delivered.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.alerts.notify import notify
from btc_assets.core.market_schema import ALERT_SCHEMA
from btc_assets.core.tables import ALERT_TABLES
from btc_assets.defs.automation import IN_FLIGHT, IN_FLIGHT_LOOKUP, TRIGGER_TAG, sensor_status
from btc_assets.defs.dagster_internals import AssetJob
from btc_assets.defs.day_gate import unusable_days
from btc_assets.defs.market_resources import AlertDeliveryResource
from btc_assets.defs.resources import DatasetResource, TelegramResource
from btc_assets.settings import Settings

NOTIFIER_INTERVAL_SECONDS = 60
# Telegram takes ~20 messages a minute per chat: more would hold the tick past Dagster's
# sensor timeout. The rest wait for the next tick.
MAX_SENDS_PER_TICK = 10


def build_whale_watch(job: AssetJob, settings: Settings) -> dg.SensorDefinition:
    interval = settings.signals.whale_poll_seconds

    @dg.sensor(
        name="whale_watch",
        job=job,
        minimum_interval_seconds=interval,
        default_status=sensor_status(settings),
        description=f"Ask CoinGlass for Hyperliquid whale positions every {interval} s (a "
        "run of whale_alerts for today); skipped while the previous run is going.",
    )
    def whale_watch(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        records = context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=job.name, statuses=IN_FLIGHT), limit=IN_FLIGHT_LOOKUP
        )
        if records:
            run = records[0].dagster_run
            return dg.SkipReason(f"whale run {run.run_id} is still {run.status.value}")
        now = clock.now_utc()
        return dg.RunRequest(
            run_key=f"whales-{int(now.timestamp()) // interval}",
            partition_key=now.date().isoformat(),
            tags={TRIGGER_TAG: "whale_watch"},
        )

    return whale_watch


def recent_alerts(
    instance: dg.DagsterInstance | None,
    dataset: DatasetResource,
    now: datetime,
    max_age: timedelta,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Alert rows of every alert table from the days that may hold alerts younger than
    ``max_age``, read through the gate; and the (table symbol day) left out, with why."""
    lake = dataset.lake()
    # Partition D holds (D 00:00, D+1 00:00]: a moment's day is that of a millisecond before.
    first, last = ((t - timedelta(milliseconds=1)).date() for t in (now - max_age, now))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    frames: list[pl.DataFrame] = []
    left_out: dict[str, str] = {}
    for table in ALERT_TABLES:
        for symbol in dataset.lake_symbols(table):
            stored = set(lake.days_present(table.name, symbol))
            present = [d for d in days if d in stored]
            reasons, _, scan = unusable_days(instance, lake, table, symbol, present, dataset.env)
            left_out.update({f"{table.name} {symbol} {d}": why for d, why in reasons.items()})
            frames.append(scan.collect())
    alerts = (
        pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame(schema=ALERT_SCHEMA)
    )
    return alerts.select(list(ALERT_SCHEMA)), left_out


def happened_at() -> pl.Expr:
    """When the reported event happened: a whale alert's position or event time
    (``details.create_time``; its ``ts`` is when the watch first saw it, which on a first
    watch is long after), else ``ts``. An alert is news while this is recent."""
    created = (
        pl.col("details")
        .str.json_path_match("$.create_time")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="ms", strict=False)
        .dt.convert_time_zone("UTC")
    )
    return (
        pl.when(pl.col("kind").str.starts_with("whale_") & created.is_not_null())
        .then(created)
        .otherwise(pl.col("ts"))
    )


def build_alert_notifier(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name="alert_notifier",
        minimum_interval_seconds=NOTIFIER_INTERVAL_SECONDS,
        default_status=sensor_status(settings),
        description="Telegram message for each new alert of the alert history at or above "
        f"the minimum severity ({settings.signals.alert_min_severity}) and younger than "
        f"{settings.signals.alert_max_age_minutes} min, exactly once.",
    )
    def alert_notifier(
        context: dg.SensorEvaluationContext,
        dataset: DatasetResource,
        telegram: TelegramResource,
        alert_delivery: AlertDeliveryResource,
    ) -> dg.SkipReason:
        now = clock.now_utc()
        alerts, left_out = recent_alerts(context.instance, dataset, now, alert_delivery.max_age)
        for where, why in sorted(left_out.items())[:5]:
            if why != "never built":
                context.log.warning(f"alert_notifier: {where} not read: {why}")
        if not (telegram.token and telegram.chat_id):
            return dg.SkipReason(
                "Telegram is not configured (TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID); nothing "
                f"sent, {alerts.height} recent alert(s) in the history"
            )
        client = telegram.client()
        fresh = alerts.filter(happened_at() > now - alert_delivery.max_age)
        result = notify(
            fresh, alert_delivery.ledger(), client.send_message, now,
            alert_delivery.max_age, alert_delivery.min_severity, max_sends=MAX_SENDS_PER_TICK,
        )  # fmt: skip
        for key, error in result.failed.items():
            context.log.error(f"alert_notifier: {key} not delivered (next tick retries): {error}")
        too_old = result.too_old + alerts.height - fresh.height
        return dg.SkipReason(
            f"{len(result.sent)} sent, {result.skipped_already_sent} already sent, "
            f"{too_old} too old, {result.below_severity} below "
            f"{alert_delivery.min_severity}, {len(result.failed)} failed, "
            f"{result.deferred} left for the next tick"
        )

    return alert_notifier


__all__: Sequence[str] = ("build_alert_notifier", "build_whale_watch", "recent_alerts")
