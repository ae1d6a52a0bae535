"""Signals, whale alerts and their delivery end to end on the sandbox: a cascade of the
synthetic market is found by ``signals``, lands in the alert history (lake and DuckDB), is
sent to Telegram once across re-runs and restarts, and never when it is old news; whale
positions are alerted once across polls; a blocked day stops its signals."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from btc_assets.core.market_schema import ALERT_SCHEMA
from btc_assets.core.schema import day_bounds
from btc_assets.core.tables import SIGNALS, WHALE_ALERTS
from btc_assets.defs.definitions import all_assets, defs
from btc_assets.defs.market_resources import AlertDeliveryResource
from btc_assets.defs.resources import SandboxResource, TelegramResource
from btc_assets.lake import Lake
from btc_assets.sandbox import market as mk
from btc_assets.sandbox import market_events as events
from btc_assets.sandbox.credentials import SANDBOX_TELEGRAM_CHAT_ID, SANDBOX_TELEGRAM_TOKEN
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.telegram import telegram_desk
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets_tests.test_assets.helpers import build_catalog, resources, run_range

SYMBOL = "BTCUSDT"
CASCADE_DAY = date(2024, 1, 20)  # the sandbox (seed 7) squeezes longs at 10:58 that day
UPSTREAM = dg.AssetSelection.assets(SIGNALS.name).upstream() - dg.AssetSelection.groups(
    "market_structure"
)


def _cascade() -> events.Cascade:
    first = mk.day_index(CASCADE_DAY)
    (found,) = events.cascades(7, SYMBOL, first, first)
    return found


def _minute(minute: int) -> datetime:
    return datetime.fromtimestamp((mk.EPOCH_MS + minute * mk.MINUTE_MS) / 1000, UTC)


@pytest.fixture
def telegram_box() -> Iterator[tuple[TelegramResource, SandboxTransport]]:
    transport = SandboxTransport()
    with serve_sandbox(transport=transport) as url:
        yield (
            TelegramResource(base_url=url, token=SANDBOX_TELEGRAM_TOKEN,
                             chat_id=SANDBOX_TELEGRAM_CHAT_ID,
                             sandbox=SandboxResource(enabled=False)),
            transport,
        )  # fmt: skip


def _notify(
    instance: dg.DagsterInstance, res: dict[str, object], telegram: TelegramResource, ledger: Path
) -> str:
    sensor = defs.resolve_sensor_def("alert_notifier")
    delivery = AlertDeliveryResource(ledger_path=str(ledger))
    with dg.build_sensor_context(
        instance=instance,
        resources={"dataset": res["dataset"], "telegram": telegram, "alert_delivery": delivery},
        repository_def=defs.get_repository_def(),
    ) as context:
        return sensor.evaluate_tick(context).skip_message or ""


def _signals(lake: Lake, day: date) -> pl.DataFrame:
    return pl.read_parquet(lake.verify_day(SIGNALS.name, SYMBOL, day).path)


def test_a_cascade_fires_once_and_is_sent_once(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pinned_clock: Callable[[datetime], None],
    telegram_box: tuple[TelegramResource, SandboxTransport],
) -> None:
    cascade = _cascade()
    began, ended = _minute(cascade.start), _minute(cascade.end)
    pinned_clock(ended + timedelta(hours=2))  # the news is two hours old
    res = resources(tmp_path)
    first = CASCADE_DAY - timedelta(days=1)
    result = run_range(instance, res, first.isoformat(), CASCADE_DAY.isoformat(),
                       selection=UPSTREAM)  # type: ignore[arg-type]  # fmt: skip
    assert result.success
    lake = Lake(tmp_path / "lake")
    alerts = _signals(lake, CASCADE_DAY)
    cascades = alerts.filter(pl.col("kind") == "liquidation_cascade")
    assert set(cascades["severity"]) == {"medium", "high"}  # one episode, both levels reached
    high = cascades.filter(pl.col("severity") == "high").row(0, named=True)
    assert began < high["ts"] <= ended + timedelta(hours=1)
    details = json.loads(high["details"])
    assert details["dominant_side"] == "long" and details["move"] < -0.005
    assert details["oi_change"] <= -0.01 and high["value"] >= high["threshold"] == 10.0

    telegram, transport = telegram_box
    ledger = tmp_path / "state" / "alerts.sqlite"
    said = _notify(instance, res, telegram, ledger)
    sent = telegram_desk(transport).texts(SANDBOX_TELEGRAM_CHAT_ID)
    due = alerts.filter(pl.col("severity") == "high")
    assert len(sent) == due.height >= 1, said
    assert any("cascade" in text.lower() and SYMBOL in text for text in sent)

    # a re-run rewrites the same alerts; the notifier sends nothing again, even restarted
    again = run_range(instance, res, first.isoformat(), CASCADE_DAY.isoformat(),
                      selection=[SIGNALS.name], force=True)  # fmt: skip
    assert again.success
    assert _signals(lake, CASCADE_DAY).equals(alerts)
    _notify(instance, res, telegram, ledger)
    assert len(telegram_desk(transport).texts(SANDBOX_TELEGRAM_CHAT_ID)) == len(sent)

    # the warehouse's alert history holds them
    build_catalog(instance, res)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        keys = {k for (k,) in conn.execute("SELECT dedupe_key FROM alert_history").fetchall()}
    assert set(alerts["dedupe_key"]) <= keys


def test_a_backfill_of_old_days_never_reaches_the_chat(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pinned_clock: Callable[[datetime], None],
    telegram_box: tuple[TelegramResource, SandboxTransport],
) -> None:
    pinned_clock(datetime(2024, 3, 10, 6, tzinfo=UTC))  # weeks after the cascade
    res = resources(tmp_path)
    first = CASCADE_DAY - timedelta(days=1)
    assert run_range(instance, res, first.isoformat(), CASCADE_DAY.isoformat(),
                     selection=UPSTREAM).success  # type: ignore[arg-type]  # fmt: skip
    assert (
        _signals(Lake(tmp_path / "lake"), CASCADE_DAY).filter(pl.col("severity") == "high").height
    )
    telegram, transport = telegram_box
    said = _notify(instance, res, telegram, tmp_path / "state" / "alerts.sqlite")
    assert telegram_desk(transport).texts(SANDBOX_TELEGRAM_CHAT_ID) == []
    assert said.startswith("0 sent")


def test_a_blocked_features_day_stops_its_signals(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(datetime(2024, 3, 10, 6, tzinfo=UTC))
    bad = [{"kind": "bad_ohlc", "path": "/fapi/v1/klines", "day": CASCADE_DAY.isoformat(),
            "start_minute": 600, "minutes": 3}]  # fmt: skip
    res = resources(tmp_path, sandbox_faults=json.dumps(bad))
    first = CASCADE_DAY - timedelta(days=1)
    result = run_range(instance, res, first.isoformat(), CASCADE_DAY.isoformat(),
                       selection=UPSTREAM)  # type: ignore[arg-type]  # fmt: skip
    assert result.success  # the bad day is blocked, the rest built
    lake = Lake(tmp_path / "lake")
    assert lake.days_present(SIGNALS.name, SYMBOL) == [first]
    verdicts = {
        e.partition: e.passed
        for e in (ev.event_specific_data for ev in result.all_events
                  if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.asset_key.path == [SIGNALS.name]
    }  # fmt: skip
    assert verdicts == {first.isoformat(): True, CASCADE_DAY.isoformat(): False}
    build_catalog(instance, res)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as conn:
        (latest,) = conn.execute("SELECT max(ts) FROM alert_history").fetchone() or (None,)
    assert latest is None or latest <= day_bounds(first)[1]


WHALES_NOW = datetime(2024, 3, 10, 6, tzinfo=UTC)
BASKET = "BTCUSDT,ETHUSDT"


def _watch(
    instance: dg.DagsterInstance, res: dict[str, object], day: date
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [a for a in all_assets if a.key.path == [WHALE_ALERTS.name]],
        instance=instance, resources=res, partition_key=day.isoformat(), raise_on_error=False,
    )  # fmt: skip


def _whales(lake: Lake, day: date) -> pl.DataFrame:
    stored = [s for s in BASKET.split(",") if day in lake.days_present(WHALE_ALERTS.name, s)]
    frames = [pl.read_parquet(lake.verify_day(WHALE_ALERTS.name, s, day).path) for s in stored]
    return pl.concat(frames) if frames else pl.DataFrame(schema=ALERT_SCHEMA)


def test_whale_positions_are_alerted_once_across_polls_and_days(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    pinned_clock: Callable[[datetime], None],
    telegram_box: tuple[TelegramResource, SandboxTransport],
) -> None:
    pinned_clock(WHALES_NOW)
    res = resources(tmp_path, symbols=BASKET)
    today = WHALES_NOW.date()
    assert _watch(instance, res, today).success
    lake = Lake(tmp_path / "lake")
    first = _whales(lake, today)
    assert first.height > 10 and set(first["symbol"]) == set(BASKET.split(","))
    assert first["dedupe_key"].is_unique().all()
    assert (first["value"] >= 1_000_000).all()
    big = first.filter(pl.col("severity") == "high")
    assert (big["value"] >= 10_000_000).all() and big.height >= 1
    position = first.filter(pl.col("kind") == "whale_position").row(0, named=True)
    shown = json.loads(position["details"])
    assert {"side", "position_size", "entry_price", "liq_price", "leverage"} <= set(shown)

    pinned_clock(WHALES_NOW + timedelta(minutes=5))  # the next poll: nothing twice
    assert _watch(instance, res, today).success
    second = _whales(lake, today)
    assert second["dedupe_key"].is_unique().all()
    assert set(first["dedupe_key"]) <= set(second["dedupe_key"])
    tomorrow = today + timedelta(days=1)
    pinned_clock(day_bounds(tomorrow)[0] + timedelta(minutes=30))  # a new day, the same whales
    assert _watch(instance, res, tomorrow).success
    next_day = _whales(lake, tomorrow)
    assert not set(next_day["dedupe_key"]) & set(second["dedupe_key"])

    # delivery: only what happened within the age limit is news
    telegram, transport = telegram_box
    _notify(instance, res, telegram, tmp_path / "state" / "alerts.sqlite")
    texts = telegram_desk(transport).texts(SANDBOX_TELEGRAM_CHAT_ID)
    assert len(texts) <= pl.concat([second, next_day]).filter(pl.col("severity") == "high").height


def test_a_whale_day_that_does_not_verify_stops_the_watch(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(WHALES_NOW)
    res = resources(tmp_path, symbols=BASKET)
    today = WHALES_NOW.date()
    assert _watch(instance, res, today).success
    lake = Lake(tmp_path / "lake")
    path = lake.verify_day(WHALE_ALERTS.name, "BTCUSDT", today).path
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    eth_before = lake.verify_day(WHALE_ALERTS.name, "ETHUSDT", today).sha256
    pinned_clock(WHALES_NOW + timedelta(minutes=5))
    failed = _watch(instance, res, today)
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    text = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert "whale_alerts BTCUSDT" in text and "does not verify" in text
    assert lake.verify_day(WHALE_ALERTS.name, "ETHUSDT", today).sha256 == eth_before


def test_past_whale_days_are_not_fetched(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(WHALES_NOW)
    res = resources(tmp_path, symbols=BASKET)
    failed = _watch(instance, res, date(2024, 3, 1))
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "answer for now only" in str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert Lake(tmp_path / "lake").days_present(WHALE_ALERTS.name, "BTCUSDT") == []


def test_the_whale_sensor_asks_for_today_and_waits_for_a_run_in_flight(
    instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(WHALES_NOW)
    sensor = defs.resolve_sensor_def("whale_watch")
    repo = defs.get_repository_def()
    first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo))
    (request,) = first.run_requests or []
    assert request.partition_key == WHALES_NOW.date().isoformat()
    job = defs.resolve_job_def("whale_watch")
    run = instance.create_run_for_job(job_def=job, run_config={})
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(
            event_type_value=dg.DagsterEventType.PIPELINE_START.value, job_name=job.name
        ),
    )
    second = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, repository_def=repo))
    assert not second.run_requests
    assert second.skip_message and run.run_id in second.skip_message
