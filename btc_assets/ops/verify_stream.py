"""The stream's part of ``btc-assets verify``: what the staging area holds today, per symbol
and table (coverage of the closed minutes, gaps, the last closed candle, its lag), and
whether the collector is alive (its state file's age, connections, reconnects)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from btc_assets.settings import Settings
from btc_assets.stream.collector import stream_targets
from btc_assets.stream.staging import (
    MINUTE_MS,
    Staging,
    day_start_ms,
    last_due_open,
    minute_runs,
)

STALE_STATE_S = 60  # the collector writes its state every 2 s


@dataclass(frozen=True)
class StreamRow:
    table: str
    symbol: str
    staged: int  # of the minutes due (closed over the grace ago)
    due: int
    gaps: int
    longest: int  # minutes
    last_close_ms: int | None
    sources: str

    def cells(self, now_ms: int) -> tuple[str, ...]:
        coverage = f"{100 * self.staged / self.due:.2f}%" if self.due else "-"
        last = lag = "-"
        if self.last_close_ms is not None:
            last = datetime.fromtimestamp(self.last_close_ms / 1000, UTC).strftime("%H:%M")
            lag = f"{max(0, now_ms - self.last_close_ms) / 1000:.0f} s"
        return (self.symbol, self.table, f"{self.staged}/{self.due}", coverage, str(self.gaps),
                f"{self.longest} min", last, lag, self.sources)  # fmt: skip


def stream_rows(
    staging: Staging, pairs: list[tuple[str, str]], day: date, now_ms: int, grace_ms: int
) -> list[StreamRow]:
    due_through = last_due_open(now_ms - grace_ms)
    rows = []
    for table, symbol in pairs:
        staged = staging.staged_day(table, symbol, day)
        start = day_start_ms(day)
        due = max(0, (due_through - start) // MINUTE_MS + 1)
        if staged is None:
            rows.append(StreamRow(table, symbol, 0, due, 1 if due else 0, due, None, "-"))
            continue
        missing = staged.missing_opens(due_through)
        runs = minute_runs(missing)
        longest = max(((b - a) // MINUTE_MS + 1 for a, b in runs), default=0)
        last = staged.frame["ts"].max()
        sources = ", ".join(f"{k} {v}" for k, v in sorted(staged.sources.items()))
        rows.append(
            StreamRow(table, symbol, due - len(missing), due, len(runs), longest,
                      int(last.timestamp() * 1000) if last is not None else None, sources)  # type: ignore[union-attr]
        )  # fmt: skip
    return rows


def collector_lines(staging: Staging, now_ms: int) -> tuple[list[str], list[str]]:
    """(lines describing the collector, problems)."""
    state = staging.read_state()
    if state is None:
        return ["collector: never ran here (no state file)"], []
    age = (now_ms - int(state.get("updated_ms", 0))) / 1000
    lines = [f"collector: pid {state.get('pid')} env {state.get('env')}, state written "
             f"{age:.0f} s ago, {state.get('rest_fills', 0)} REST gap fill(s)"]  # fmt: skip
    problems = []
    if age > STALE_STATE_S:
        problems.append(f"stream collector not running: its state is {age:.0f} s old")
    for c in state.get("connections", []):
        up = "connected" if c.get("connected") and age <= STALE_STATE_S else "DOWN"
        lines.append(
            f"  {c['name']}: {up}, {c['streams']} stream(s), {c.get('reconnects', 0)} "
            f"reconnect(s), {c.get('rollovers', 0)} rollover(s)"
            + (f", last error: {c['last_error']}" if c.get("last_error") else "")
        )
    return lines, problems


def verify_stream(settings: Settings, basket: Sequence[Any], now: Any) -> list[str]:
    """Print the stream staging's part; return its problems (none if no stream is used)."""
    staging = Staging(settings.stream_dir)
    if not settings.stream_dir.exists():
        print(f"\nstream: no staging at {settings.stream_dir} (btc-assets stream not used)")
        return []
    perps = {s.perp for s in basket}
    spots = {s.spot for s in basket}
    pairs = [(t.table, t.symbol) for t in stream_targets(settings.symbols)
             if t.symbol in (perps if t.market == "perp" else spots)]  # fmt: skip
    now_ms = int(now.timestamp() * 1000)
    grace_ms = settings.stream.grace_seconds * 1000
    rows = stream_rows(staging, pairs, now.date(), now_ms, grace_ms)
    print(f"\nstream staging {settings.stream_dir}, today {now.date()} "
          f"(minutes closed over {grace_ms // 1000} s ago)")  # fmt: skip
    header = ("symbol", "table", "staged", "coverage", "gaps", "longest", "last close",
              "lag", "sources")  # fmt: skip
    cells = [r.cells(now_ms) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *cells, strict=True)]
    for row in (header, *cells):
        print("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    lines, problems = collector_lines(staging, now_ms)
    for text in lines:
        print(text)
    problems += [
        f"stream staging {r.table} {r.symbol} {now.date()}: {r.gaps} gap(s), "
        f"{r.due - r.staged} closed minute(s) missing"
        for r in rows
        if r.gaps
    ]
    return problems
