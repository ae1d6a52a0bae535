"""``forecast_monitoring``: per vendor and per day, what the forecasting sources delivered.

Written as JSON under ``data/reports/monitoring/<vendor>_summary.json`` (the seed's
``artifacts/monitoring/*_summary.json``) over the last ``ForecastResource.monitoring_days``
days, and shown in the materialization. Per day:

- **fred / alphavantage / cryptoquant**, per series: publications (rows stored that day),
  observations, values the vendor served empty (FRED's '.'), the newest period known by
  the day's end and how old it was then (staleness, hours), revised rows (CryptoQuant);
- **coinapi**, per table and symbol: hourly bars present of expected (coverage), and days
  stored as not served;
- **features_1h**, per symbol and series: the share of bars with a value, sources used
  (fallbacks: funding from CoinAPI, CryptoQuant revised), null reasons, staleness of the
  values used, and nulls of the Binance-derived columns.

Only days that pass their gate and verify are read (``day_gate.unusable_days``); the rest
are listed under ``left_out`` with why. The same per-day figures are the ``sources`` check
of features_1h, the dashboard in the UI; this asset is their history on disk.
"""

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.core.hourly_figures import sources_by_day
from btc_assets.core.quality import quality_by_day
from btc_assets.core.schema import day_bounds
from btc_assets.core.tables import COINAPI_TABLES, PUBLISHED_TABLES, Table, features_1h_table
from btc_assets.defs.day_gate import NEVER_BUILT, Input, gate_names, gated_deps
from btc_assets.defs.forecast_resources import ForecastResource
from btc_assets.defs.resources import DatasetResource

VENDORS = {"fred_series": "fred", "alphavantage_daily": "alphavantage",
           "cryptoquant_flows": "cryptoquant"}  # fmt: skip
HOURS = 3600.0


def _read(
    context: dg.AssetExecutionContext, dataset: DatasetResource, table: Table, days: list[date]
) -> tuple[dict[str, pl.DataFrame], dict[str, str], dict[str, dict[date, str]]]:
    """Per stored name: its usable rows; what was left out and why; days stored empty
    with a reason (``unavailable`` in provenance: not served, outside the plan)."""
    frames: dict[str, pl.DataFrame] = {}
    left_out: dict[str, str] = {}
    empty: dict[str, dict[date, str]] = {}
    gated = gate_names(
        context.instance, dataset.lake(), table, dataset.lake_symbols(table), days, dataset.env
    )
    for name, (out, usable, scan) in gated.items():
        left_out.update(
            {f"{name} {d}": why for d, why in sorted(out.items()) if why != NEVER_BUILT}
        )
        frames[name] = scan.collect()
        empty[name] = {d: w.provenance["unavailable"] for d, w in usable.items()
                       if w.provenance.get("unavailable")}  # fmt: skip
    return frames, left_out, empty


def _published(frame: pl.DataFrame, table: Table, days: list[date]) -> dict[str, Any]:
    figures = quality_by_day(table, frame.lazy(), days)
    out: dict[str, Any] = {}
    newest = None
    for row in figures.sort("day").iter_rows(named=True):
        day = row["day"]
        newest = max(filter(None, [newest, row["latest_event"]]), default=None)
        end = day_bounds(day)[1]
        part = frame.filter((pl.col("ts") > day_bounds(day)[0]) & (pl.col("ts") <= end))
        value = "close" if "close" in part.columns else "value"
        out[day.isoformat()] = {
            "publications": row["rows"],
            "observations": row["observations"],
            "empty_values": int(part[value].null_count()),
            "revised_rows": int(part["revised"].sum()) if "revised" in part.columns else None,
            "newest_period_known": newest.isoformat() if newest else None,
            "staleness_hours_at_day_end": round((end - newest).total_seconds() / HOURS, 2)
            if newest
            else None,
        }
    return out


def _bars(frame: pl.DataFrame, table: Table, days: list[date], empty: dict[date, str]) -> dict:
    as_of = clock.now_utc() if clock.today_utc() in days else None
    out = {}
    for row in quality_by_day(table, frame.lazy(), days, as_of).iter_rows(named=True):
        day = row["day"]
        expected, present = row["expected_bars"], row["present_bars"]
        out[day.isoformat()] = {
            "expected_bars": expected,
            "present_bars": present,
            "coverage_pct": round(100.0 * present / expected, 3) if expected else None,
            "not_served": empty.get(day),
        }
    return out


def forecast_monitoring_asset(series: Any) -> dg.AssetsDefinition:
    features = features_1h_table(series)
    tables = [*PUBLISHED_TABLES, *COINAPI_TABLES, features]

    @dg.asset(
        name="forecast_monitoring",
        description="Per vendor and day: coverage, nulls, fallback share and staleness of the "
        "forecasting sources and features_1h, as JSON under data/reports/monitoring/.",
        group_name="reports",
        kinds={"polars", "json"},
        **gated_deps(Input(t) for t in tables),
    )
    def forecast_monitoring(
        context: dg.AssetExecutionContext, dataset: DatasetResource, forecast: ForecastResource
    ) -> dg.MaterializeResult:
        today = clock.today_utc()
        days = [today - timedelta(days=i) for i in range(forecast.monitoring_days - 1, -1, -1)]
        root = Path(dataset.reports_root) / "monitoring"
        root.mkdir(parents=True, exist_ok=True)
        window = {"first_day": days[0].isoformat(), "last_day": days[-1].isoformat()}
        written: dict[str, str] = {}
        summaries: dict[str, dict[str, Any]] = {}
        for table in PUBLISHED_TABLES:
            frames, left_out, empty = _read(context, dataset, table, days)
            summaries[VENDORS[table.name]] = {
                "table": table.name,
                "series": {n: _published(f, table, days) for n, f in frames.items()},
                "not_served": {
                    n: {d.isoformat(): w for d, w in e.items()} for n, e in empty.items() if e
                },
                "left_out": left_out,
            }
        coinapi: dict[str, Any] = {"tables": {}, "left_out": {}}
        for table in COINAPI_TABLES:
            frames, left_out, empty = _read(context, dataset, table, days)
            coinapi["tables"][table.name] = {
                n: _bars(f, table, days, empty[n]) for n, f in frames.items()
            }
            coinapi["left_out"].update({f"{table.name} {k}": v for k, v in left_out.items()})
        summaries["coinapi"] = coinapi
        frames, left_out, _ = _read(context, dataset, features, days)
        summaries["features_1h"] = {
            "symbols": {
                n: {d.isoformat(): v for d, v in sources_by_day(f, series, days).items()}
                for n, f in frames.items()
            },
            "thresholds": {
                "max_series_null_pct": forecast.max_series_null_pct,
                "max_coinapi_divergence_bp": forecast.max_coinapi_divergence_bp,
                "max_coinapi_divergent_pct": forecast.max_coinapi_divergent_pct,
            },
            "left_out": left_out,
        }
        generated = clock.now_utc().isoformat(timespec="seconds")
        for vendor, summary in summaries.items():
            path = root / f"{vendor}_summary.json"
            body = {"vendor": vendor, "env": dataset.env, "generated_at": generated,
                    "window": window, **summary}  # fmt: skip
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(body, indent=2, default=str) + "\n")
            tmp.replace(path)
            written[vendor] = str(path)
        left = sum(len(s.get("left_out", {})) for s in summaries.values())
        return dg.MaterializeResult(
            metadata={
                "reports": dg.MetadataValue.json(written),
                "window": dg.MetadataValue.json(window),
                "left_out_symbol_days": left,
            }
        )

    return forecast_monitoring
