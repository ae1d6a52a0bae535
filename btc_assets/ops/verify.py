"""What the lake holds, table by table: the figures behind ``btc-assets verify``.

The same measures the quality checks record per day (``core.quality.quality_by_day`` and the
MANIFEST verification), summed over a window of days, plus the gap runs across the whole
window (a gap spanning midnight is one gap here, two per-day gaps in the checks) and how far
the newest bar lags behind now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import polars as pl

from btc_assets.core import quality
from btc_assets.core.quality import quality_by_day
from btc_assets.core.schema import day_bounds
from btc_assets.core.tables import Table
from btc_assets.lake import Lake

SHOWN = 3  # gaps, days and errors listed per table; the counts cover the rest
PUBLISHED_INTEGRITY = ("duplicate_keys", "null_values", "published_early", "off_clock_rows")


@dataclass
class TableReport:
    table: str
    symbol: str
    now: datetime
    window: list[date] = field(default_factory=list)
    present_days: list[date] = field(default_factory=list)  # inside the window
    expected: int | None = None  # bars or events over the window; None: cannot tell
    present: int = 0
    unit: str = "bars"
    gaps: list[tuple[datetime, datetime, int]] = field(default_factory=list)  # bar tables
    short_days: list[tuple[date, int, int]] = field(default_factory=list)  # events: present, exp.
    max_spacing: timedelta | None = None
    corrupt: dict[date, str] = field(default_factory=dict)
    # Days written by another env (live vs sandbox), and files no manifest names.
    foreign: dict[date, str] = field(default_factory=dict)
    uncommitted: dict[date, list[str]] = field(default_factory=dict)
    # Published tables: days whose rows break the contract (duplicate keys, nulls, a value
    # known before its period began), with the figures.
    broken: dict[date, str] = field(default_factory=dict)
    last_ts: datetime | None = None

    @property
    def coverage(self) -> float | None:
        return self.present / self.expected if self.expected else None

    @property
    def missing_days(self) -> list[date]:
        have = set(self.present_days)
        return [d for d in self.window if d not in have]

    def row(self) -> tuple[str, ...]:
        coverage = "n/a" if self.coverage is None else f"{100 * self.coverage:.3f}%"
        if self.unit == "bars":
            count = str(len(self.gaps))
            longest = f"{max(g[2] for g in self.gaps)} bars" if self.gaps else "-"
        else:
            count = str(len(self.short_days))
            longest = _duration(self.max_spacing) if self.max_spacing else "-"
        last = "-" if self.last_ts is None else f"{self.last_ts:%Y-%m-%d %H:%M}"
        lag = "-" if self.last_ts is None else _duration(self.now - self.last_ts)
        days = f"{len(self.present_days)}/{len(self.window)}"
        return (self.table, days, coverage, count, longest, str(len(self.corrupt)), last, lag)

    def problems(self) -> list[str]:
        name = f"{self.table} {self.symbol}"
        if not self.window:
            return [f"{name}: no days in the lake"]
        out = []
        missing = self.missing_days
        if missing:
            out.append(f"{name}: {len(missing)} day(s) missing: {_some(missing)}")
        if self.gaps:
            shown = [f"{a:%Y-%m-%d %H:%M} .. {b:%Y-%m-%d %H:%M} ({n} {self.unit})"
                     for a, b, n in self.gaps]  # fmt: skip
            out.append(f"{name}: {len(self.gaps)} gap(s): {_some(shown)}")
        if self.short_days:
            shown = [f"{d} ({p}/{e})" for d, p, e in self.short_days]
            out.append(f"{name}: {len(self.short_days)} day(s) short of events: {_some(shown)}")
        out += [f"{name}: {day} breaks the contract: {why}"
                for day, why in sorted(self.broken.items())]  # fmt: skip
        out += [f"{name}: {day} corrupt (its rows are not counted): {error}"
                for day, error in sorted(self.corrupt.items())]  # fmt: skip
        out += [f"{name}: {day} {why} (its rows are not counted)"
                for day, why in sorted(self.foreign.items())]  # fmt: skip
        out += [f"{name}: {day} has {len(files)} file(s) no manifest names (an interrupted "
                f"write, or a superseded version kept for readers): {', '.join(files)}"
                for day, files in sorted(self.uncommitted.items())]  # fmt: skip
        return out


def verify_table(
    lake: Lake, table: Table, symbol: str, days: int | None, now: datetime, env: str
) -> TableReport:
    """The report of one table over the ``days`` UTC days ending yesterday, or (``None``)
    from its first to its last day present."""
    unit = "bars" if table.every else "rows" if table.published else "events"
    report = TableReport(table.name, symbol, now, unit=unit)
    present = lake.days_present(table.name, symbol)
    schema = dict(table.schema)
    report.last_ts = lake.last_ts(table.name, symbol)
    if days is not None:
        last = now.date() - timedelta(days=1)  # today's partition is still being written
        first = last - timedelta(days=days - 1)
    elif present:
        first, last = present[0], present[-1]
    else:
        return report
    report.window = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    report.present_days = [d for d in present if first <= d <= last]
    read = lake.read_days(table.name, symbol, report.present_days, schema=schema)
    report.corrupt = dict(read.errors)
    report.foreign = {
        day: f"written in {w.provenance.get('env') or 'an unrecorded'} env, this is {env}"
        for day, w in read.committed.items()
        if w.provenance.get("env") != env
    }
    report.uncommitted = {
        day: [p.name for p in files]
        for day, files in lake.uncommitted_files(table.name, symbol).items()
        if first <= day <= last
    }
    # A corrupt file may not even parse, and its rows cannot be trusted: its bars count as
    # missing. One read of the rest serves both the per-day figures and the gap runs.
    good = [d for d in read.committed if d not in report.foreign]
    frame = lake.read_days(table.name, symbol, good, schema=schema).frame.collect().lazy()
    by_day = quality_by_day(table, frame, report.window)
    if table.published:  # no expected count: a day may publish nothing
        report.present = int(by_day["rows"].sum())
        for row in by_day.iter_rows(named=True):
            bad = [f"{k}={row[k]}" for k in PUBLISHED_INTEGRITY if row[k]]
            if bad:
                report.broken[row["day"]] = ", ".join(bad)
    elif table.every is not None:
        report.expected = int(by_day["expected_bars"].sum())
        report.present = int(by_day["present_bars"].sum())
        start, end = day_bounds(first)[0], day_bounds(last)[1]
        report.gaps = quality.gaps(frame, table.every, start, end).rows()
    else:
        report.present = int(by_day["present_events"].sum())
        known = by_day.filter(pl.col("expected_events").is_not_null())
        # Without two events the interval is unknown; then coverage is too.
        report.expected = int(known["expected_events"].sum()) if known.height else None
        short = known.filter(pl.col("present_events") < pl.col("expected_events"))
        report.short_days = short.select("day", "present_events", "expected_events").rows()
        report.max_spacing = by_day["max_spacing"].max()  # type: ignore[assignment]
    return report


def _duration(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    days, minutes = divmod(minutes, 1440)
    text = f"{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{days}d {text}" if days else text


def _some(items: list[str] | list[date]) -> str:
    shown = ", ".join(str(x) for x in items[:SHOWN])
    return shown + (f", ... ({len(items) - SHOWN} more)" if len(items) > SHOWN else "")
