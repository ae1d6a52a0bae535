"""``btc-assets serve``: the service (``btc_assets/service``) assembled from the settings.

The one place that ties the service to Dagster: the quality gate of any lake table (its
asset key is the table name) is read from the instance (``DAGSTER_HOME``) through
``defs/day_gate.check_failures``, and handed to the service as plain callables: one for
``features_1h`` (/predict/latest) and one that takes the table (the market-data routes).
Without an instance the service still runs, says ``"gate": "unchecked"`` in ``/health/ready``
and ``/predict/latest``, and logs why once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import date, timedelta

from btc_assets.core.tables import features_1h_table
from btc_assets.service.config import Gate, ServiceConfig, TableGate
from btc_assets.settings import Settings

log = logging.getLogger("btc_assets.service")
USAGE = 2


def service_config(
    settings: Settings, gate: Gate | None, table_gate: TableGate | None = None
) -> ServiceConfig:
    return ServiceConfig(
        lake_root=settings.lake_location,
        model_name=settings.model.name,
        symbols=tuple(s.perp for s in settings.symbols),
        env=settings.env,
        max_feature_age=timedelta(minutes=settings.serve.max_feature_age_minutes),
        reload_seconds=settings.serve.reload_seconds,
        gate=gate,
        features_table=features_1h_table().name,
        table_gate=table_gate,
    )


def dagster_table_gate() -> TableGate | None:
    """Any table's day gate from the Dagster instance (asset key = the table name); None
    (warned once) without an instance."""
    import dagster as dg

    from btc_assets.defs.day_gate import check_failures

    try:
        instance = dg.DagsterInstance.get()
    except Exception as exc:  # DAGSTER_HOME unset or missing, a bad dagster.yaml, no database
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning(
            "no Dagster instance (%s): the quality gates (features_1h, market tables) are not "
            'checked, every verified day of this env is served ("gate": "unchecked")',
            first,
        )
        return None

    def gate(table: str, symbol: str, days: list[date]) -> dict[date, str]:
        failed = check_failures(instance, [dg.AssetKey(table)], days, symbol)
        return {day: "; ".join(reasons) for day, reasons in failed.items()}

    return gate


def features_gate(table_gate: TableGate | None) -> Gate | None:
    """``table_gate`` bound to ``features_1h``: the gate /predict/latest asks."""
    if table_gate is None:
        return None
    table = features_1h_table().name

    def gate(symbol: str, days: list[date]) -> Mapping[date, str]:
        return table_gate(table, symbol, days)

    return gate


def dagster_gate() -> Gate | None:
    """``features_1h``'s day gate from the Dagster instance; None (warned once) without one."""
    return features_gate(dagster_table_gate())


def run_serve(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    import uvicorn

    from btc_assets.service.app import create_app

    host = host or settings.serve.host
    port = settings.serve.port if port is None else port
    if not 1 <= port <= 65535:
        print(f"btc-assets serve: --port {port}: expected a TCP port 1-65535", file=sys.stderr)
        return USAGE
    table_gate = dagster_table_gate()
    config = service_config(settings, features_gate(table_gate), table_gate)
    log.info(
        "serving model %s (%s env) for %s from %s on http://%s:%d (reload every %.1f s, "
        "features older than %d min are stale)", config.model_name, config.env,
        ", ".join(config.symbols), config.lake_root, host, port, config.reload_seconds,
        settings.serve.max_feature_age_minutes,
    )  # fmt: skip
    # One worker: the model and the caches live in this process. httptools and uvloop are
    # used when installed (uvicorn's "auto"), h11 and asyncio otherwise.
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=False)
    return 0
