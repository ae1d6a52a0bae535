"""What a day's materialization says: per-symbol metadata merged over the basket, blocked
days and the run tags that name them, and the events that carry it all.

Split from ``assets.common`` (which decides what to record); nothing here reads the lake.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from typing import Any

import dagster as dg
import polars as pl

from btc_assets.core.tables import Table

BLOCKED_TAG_PREFIX = "btc_assets/blocked."
# A run tagged with a comma list of perp symbols covers only those basket members: adding a
# symbol is a backfill that leaves the others' days alone.
SYMBOLS_TAG = "btc_assets/symbols"


def markdown_table(frame: pl.DataFrame) -> str:
    with pl.Config(
        tbl_formatting="MARKDOWN",
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_cols=-1,
        tbl_width_chars=400,
    ):
        return str(frame)


def column_schema(table: Table) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in table.schema.items()]
    )


def merge_day_metadata(
    built: Mapping[str, dict[str, Any]],
    blocked: Mapping[tuple[str, date], list[str]],
    day: date,
    symbols: int,
) -> dict[str, Any]:
    """One day's materialization metadata over the symbols of the run.

    One symbol: its own metadata. Several: row counts added up, figures that agree kept,
    each symbol's in ``by_symbol``, and the blocked ones named with their causes.
    """
    stopped = {symbol: why for (symbol, d), why in blocked.items() if d == day}
    if not built:
        return blocked_metadata(
            why if symbols == 1 else f"{symbol}: {why}"
            for symbol, reasons in sorted(stopped.items())
            for why in reasons
        )
    if symbols == 1:
        return next(iter(built.values()))
    first = next(iter(built.values()))
    merged: dict[str, Any] = {
        "lake_path": first["lake_path"],
        "preview": first["preview"],
        "symbols_built": len(built),
    }
    plain = {s: {k: v for k, v in m.items() if _is_plain(v)} for s, m in built.items()}
    for name in sorted({k for m in plain.values() for k in m}):
        values = [m[name] for m in plain.values() if name in m]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            merged[name] = sum(values)
        elif all(v == values[0] for v in values) and len(values) == len(plain):
            merged[name] = values[0]
    merged["by_symbol"] = dg.MetadataValue.json(plain)
    if stopped:
        merged["blocked_symbols"] = ",".join(sorted(stopped))
        merged["blocked_by"] = dg.MetadataValue.md(
            "\n".join(f"- {s}: {why}" for s, reasons in sorted(stopped.items()) for why in reasons)
        )
    return merged


def _is_plain(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def blocked_metadata(reasons: Iterable[str]) -> dict[str, Any]:
    """What a blocked day's materialization says: that it is blocked, and by what."""
    return {
        "blocked": True,
        "blocked_by": dg.MetadataValue.md("\n".join(f"- {why}" for why in reasons)),
    }


def tag_blocked(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    blocked: Mapping[tuple[str, date], Any],
) -> None:
    """Name the blocked (symbol, day) pairs on the run, one tag per asset (steps may run in
    parallel)."""
    days = sorted({d.isoformat() for _, d in blocked})
    symbols = sorted({s for s, _ in blocked})
    text = f"{len(days)} day(s): " + ", ".join(days[:8]) + (" ..." if len(days) > 8 else "")
    if len(symbols) > 1 or context.run.tags.get(SYMBOLS_TAG):
        text += f" ({', '.join(symbols[:8])}{' ...' if len(symbols) > 8 else ''})"
    context.instance.add_run_tags(
        context.run.run_id, {BLOCKED_TAG_PREFIX + key.to_user_string().replace("/", "."): text}
    )
    pairs = ", ".join(f"{s} {d}" for s, d in sorted(blocked))
    context.log.error(
        f"{key.to_user_string()}: {len(blocked)} symbol-day(s) blocked, not built: {pairs}; "
        "the rest of the range was built"
    )


def materialize_days(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    per_day: Mapping[date, Mapping[str, Any]],
    common: Mapping[str, Any],
    range_only: Mapping[str, Any],
    materialize_all: bool,
) -> Iterator[Any]:
    """The step's output for the whole range, or one ``AssetMaterialization`` per day.

    ``materialize_all``: every day of the range was done, so the output covers it and each
    day's metadata is attached through ``add_asset_metadata``. Otherwise only ``per_day``'s
    days are recorded, one event each, and the caller fails the step afterwards (no output
    is owed then).
    """
    if materialize_all:
        for day, metadata in per_day.items():
            context.add_asset_metadata(dict(metadata), partition_key=day.isoformat())
        yield dg.MaterializeResult(metadata={**common, **range_only})
    else:
        for day, metadata in per_day.items():
            yield dg.AssetMaterialization(
                asset_key=key, partition=day.isoformat(), metadata={**common, **metadata}
            )
