"""``qa_report``: the seed's ``p1_qa_core.json`` over the last N days of ``bars_15m``.

Written to ``data/reports/p1_qa_core.json`` and ``p1_qa_coverage.png``; the materialization
shows the summary as a markdown table and the coverage chart, so bad days stand out.
"""

import base64
import io
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.assets.common import partial_cutoff, table_key
from btc_assets.assets.features import BAR, IMPUTED_FLAGS, gate_figures
from btc_assets.assets.heatmap import newest_picture
from btc_assets.core.schema import DERIVED_FEATURES
from btc_assets.core.tables import FEATURES, HEATMAP_CANDLES, HEATMAP_TILES
from btc_assets.defs import checks
from btc_assets.defs.day_gate import Input, gated_deps, unusable_days
from btc_assets.defs.resources import DatasetResource, QualityGatesResource

REPORT_NAME = "p1_qa_core.json"
CHART_NAME = "p1_qa_coverage.png"
HEATMAP_NAME = "liquidation_heatmap.png"
HEATMAP_LOOKBACK = 7  # stored heatmap days looked at for the newest usable one


def _gate_verdicts(instance: dg.DagsterInstance, days: list[date]) -> dict[str, str]:
    """Latest ``bars_15m.quality`` status per day: SUCCEEDED, FAILED, or unchecked."""
    key = dg.AssetCheckKey(table_key(FEATURES), checks.QUALITY)
    infos = instance.event_log_storage.get_asset_check_partition_info(
        [key], partition_keys=[d.isoformat() for d in days]
    )
    verdicts = {d.isoformat(): "unchecked" for d in days}
    for info in infos:
        if info.partition_key in verdicts:
            verdicts[info.partition_key] = info.latest_execution_status.value
    return verdicts


def _summed_by_day(per_symbol_day: pl.DataFrame) -> pl.DataFrame:
    """The basket's figures per day: counts added over the symbols."""
    counts = [
        c for c in per_symbol_day.columns
        if c not in ("day", "symbol") and per_symbol_day[c].dtype.is_integer()
    ]  # fmt: skip
    return per_symbol_day.group_by("day").agg(pl.col(counts).sum()).sort("day")


def _coverage_matrix(per_symbol_day: pl.DataFrame) -> dict[str, dict[str, float | None]]:
    """Day x symbol: % of expected bars present (None: nothing expected)."""
    out: dict[str, dict[str, float | None]] = {}
    for row in per_symbol_day.sort("symbol", "day").iter_rows(named=True):
        expected = row["expected_bars"]
        pct = round(100.0 * row["present_bars"] / expected, 3) if expected else None
        out.setdefault(row["symbol"], {})[row["day"].isoformat()] = pct
    return out


def _chart(
    by_day: pl.DataFrame, per_symbol_day: pl.DataFrame, verdicts: dict[str, str], path: Path
) -> bytes:
    """One symbol: coverage bars per day. Several: a day x symbol coverage heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    days = by_day["day"].to_list()
    symbols = sorted(per_symbol_day["symbol"].unique().to_list())
    if len(symbols) > 1:
        grid = (
            per_symbol_day.with_columns(
                pct=100.0 * pl.col("present_bars") / pl.col("expected_bars")
            )
            .pivot(on="day", index="symbol", values="pct")
            .sort("symbol")
        )
        values = grid.select([c for c in grid.columns if c != "symbol"]).to_numpy()
        fig, ax = plt.subplots(figsize=(10, 1 + 0.3 * len(symbols)), dpi=100)
        image = ax.imshow(values, aspect="auto", cmap="RdYlGn", vmin=90.0, vmax=100.0)
        ax.set_yticks(range(len(symbols)), labels=grid["symbol"].to_list())
        ax.set_xlabel(f"day, {days[0]} .. {days[-1]}")
        ax.set_title("bars_15m coverage, % of expected bars, per day and symbol")
        fig.colorbar(image, ax=ax)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        path.write_bytes(buffer.getvalue())
        return buffer.getvalue()
    coverage = (100 * by_day["present_bars"] / by_day["expected_bars"]).to_list()
    colours = ["#c0392b" if verdicts[d.isoformat()] == "FAILED" else "#2e86c1" for d in days]
    fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
    ax.bar(days, coverage, color=colours, width=0.9)
    ax.set_ylim(min(90.0, min(coverage, default=100.0) - 1), 100.5)
    ax.set_ylabel("bars present, %")
    ax.set_title(f"bars_15m coverage per day (red: quality gate failed), {days[0]} .. {days[-1]}")
    fig.autofmt_xdate()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


@dg.asset(
    name="qa_report",
    description="QA over the last N days of bars_15m (QualityGatesResource.qa_report_days): "
    "expected vs present bars, missing per column, imputation ratios, duplicates, NaN counts "
    "of derived features, gate verdicts. JSON + PNG under data/reports/.",
    group_name="reports",
    kinds={"polars", "json"},
    **gated_deps([Input(FEATURES), Input(HEATMAP_TILES), Input(HEATMAP_CANDLES)]),
)
def qa_report(
    context: dg.AssetExecutionContext, dataset: DatasetResource, gates: QualityGatesResource
) -> dg.MaterializeResult:
    lake, symbols = dataset.lake(), dataset.lake_symbols(FEATURES)
    present = sorted({d for s in symbols for d in lake.days_present(FEATURES.name, s)})
    if not present:
        raise dg.Failure(f"qa_report: no {FEATURES.name} days in the lake yet; build it first")
    end = present[-1]
    days = [end - timedelta(days=i) for i in range(gates.qa_report_days - 1, -1, -1)]
    days = [d for d in days if d >= present[0]]
    # Only days that pass the gate and verify are summarised; the rest are listed as left out.
    left_out: dict[str, str] = {}
    frames: list[pl.DataFrame] = []
    figures: list[pl.DataFrame] = []
    for symbol in symbols:
        out, _, scan = unusable_days(context.instance, lake, FEATURES, symbol, days, dataset.env)
        left_out.update({f"{symbol} {d.isoformat()}": why for d, why in sorted(out.items())})
        frame = scan.collect()
        as_of = partial_cutoff(days, frame.lazy(), BAR)
        by_symbol = gate_figures(frame, days, gates.warmup_days, as_of)
        frames.append(frame)
        figures.append(by_symbol.with_columns(symbol=pl.lit(symbol)))
    frame = pl.concat(frames)
    per_symbol_day = pl.concat(figures, how="diagonal_relaxed")
    by_day = _summed_by_day(per_symbol_day)
    verdicts = _gate_verdicts(context.instance, days)
    expected, got = int(by_day["expected_bars"].sum()), int(by_day["present_bars"].sum())
    failed = sorted(d for d, v in verdicts.items() if v == "FAILED")
    report: dict[str, Any] = {
        "table": FEATURES.name,
        "symbols": symbols,
        "generated_at": clock.now_utc().isoformat(timespec="seconds"),
        "window": {"first_day": days[0].isoformat(), "last_day": end.isoformat(),
                   "days": len(days), "days_present": int((by_day["rows"] > 0).sum())},
        "bars": {"expected": expected, "present": got, "missing": expected - got,
                 "coverage": got / expected if expected else None},
        "coverage_by_symbol": _coverage_matrix(per_symbol_day),
        "missing_per_column": {c: int(n) for c, n in frame.null_count().row(0, named=True).items()}
        if frame.height else {},
        "imputation_ratio": {flag.removesuffix("_now_imputed"): float(
            frame[flag].fill_null(False).mean() or 0.0) if frame.height else None
            for flag in IMPUTED_FLAGS},
        "duplicates": int(by_day["duplicate_keys"].sum()),
        "nan_or_null_after_warmup": {n: int(by_day[f"{n}_nulls"].sum()) for n in DERIVED_FEATURES},
        "gates": {
            "thresholds": {"max_gap_pct": gates.max_gap_pct,
                           "max_imputed_pct": gates.max_imputed_pct,
                           "warmup_days": gates.warmup_days,
                           "price_tolerance_bp": gates.price_tolerance_bp},
            "days_passed": sum(v == "SUCCEEDED" for v in verdicts.values()),
            "days_failed": len(failed),
            "days_unchecked": sum(v == "unchecked" for v in verdicts.values()),
            "failed_days": failed,
        },
        "left_out_days": left_out,
    }  # fmt: skip
    reports = Path(dataset.reports_root)
    reports.mkdir(parents=True, exist_ok=True)
    heatmap = _heatmap(context.instance, dataset, symbols[0], reports / HEATMAP_NAME)
    report["liquidation_heatmap"] = heatmap[0]
    report_path = reports / REPORT_NAME
    tmp = report_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    tmp.replace(report_path)
    png = _chart(by_day, per_symbol_day, verdicts, reports / CHART_NAME)
    summary = [
        ("window", f"{days[0]} .. {end} ({len(days)} days)"),
        ("bars present / expected", f"{got:,} / {expected:,} ({report['bars']['coverage']:.4%})"),
        ("imputed funding / OI", ", ".join(f"{v:.3%}" for v in
                                          report["imputation_ratio"].values() if v is not None)),
        ("duplicates", str(report["duplicates"])),
        ("NaN/null derived after warm-up", str(sum(report["nan_or_null_after_warmup"].values()))),
        ("gate verdicts", f"{report['gates']['days_passed']} passed, {len(failed)} failed, "
                          f"{report['gates']['days_unchecked']} unchecked"),
        ("failed days", ", ".join(failed[:20]) + (" ..." if len(failed) > 20 else "") or "none"),
        ("symbols", ", ".join(symbols)),
        ("symbol-days left out (gate, verification, env)", str(len(left_out))),
    ]  # fmt: skip
    table = "| figure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in summary)
    image = base64.b64encode(png).decode()
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(table),
            "coverage_chart": dg.MetadataValue.md(f"![coverage](data:image/png;base64,{image})"),
            "report_path": dg.MetadataValue.path(str(report_path)),
            "chart_path": dg.MetadataValue.path(str(reports / CHART_NAME)),
            "failed_days": dg.MetadataValue.json(failed),
            "left_out_days": dg.MetadataValue.json(report["left_out_days"]),
            "coverage": report["bars"]["coverage"],
            **heatmap[1],
        }
    )


def _heatmap(
    instance: dg.DagsterInstance, dataset: DatasetResource, symbol: str, path: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The newest usable heatmap day of ``symbol`` drawn to ``path``: what the report says
    of it, and the metadata showing it (nothing drawn when no day passes its gate)."""
    lake = dataset.lake()
    days = lake.days_present(HEATMAP_TILES.name, symbol)[-HEATMAP_LOOKBACK:]
    picture, left_out = newest_picture(instance, lake, dataset.env, symbol, days)
    skipped = {d.isoformat(): why for d, why in sorted(left_out.items())}
    if picture is None:
        why = "no heatmap day stored" if not days else "no stored heatmap day passes its gate"
        return {"symbol": symbol, "drawn": False, "why": why, "left_out": skipped}, {}
    tmp = path.with_suffix(".png.tmp")
    tmp.write_bytes(picture.png)
    tmp.replace(path)
    return (
        {"symbol": symbol, "drawn": True, "day": picture.day.isoformat(),
         "scope": picture.scope, "path": str(path), "left_out": skipped},
        {**picture.metadata("liquidation_heatmap"),
         "heatmap_path": dg.MetadataValue.path(str(path))},
    )  # fmt: skip
