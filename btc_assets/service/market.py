"""The market-data routes: the lake's open interest, liquidation heatmaps and alert history.

    GET /replay/oi/{symbol}?start=&end=                open interest OHLC (USD, 15m), ts in
                                                       (start, end], columns as arrays
    GET /heatmap/{symbol}?day=&scope=pair|coin&format=json|png
                                                       one day's liquidation heatmap tiles and
                                                       candles, or its picture
    GET /signals?since=&severity=&symbol=&kind=        signals with ts > since, newest first
    GET /whales/alerts?since=&symbol=                  whale alerts likewise

Only days that may be served are read (``market_data.py``: verified, this env, gate open);
every other day of the request is listed with its reason. Times are UTC ISO 8601: a date
(``2024-03-10``, its midnight) or a date-time, naive meaning UTC; answers spell ``ts`` as
``2024-03-10T00:15:00.000Z``. A refused request gets a JSON ``detail`` naming the culprit:
400 for a bad parameter, 404 for an unknown symbol or a day with nothing servable, 503 when
the quality gate cannot be asked. The handlers are plain functions (run in the threadpool):
the reads and the drawing block, the event loop and /predict do not wait for them.
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import nullcontext, suppress
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from btc_assets.charts.heatmap import heatmap_png
from btc_assets.core.market_schema import HEATMAP_SCOPES, SEVERITIES
from btc_assets.core.tables import (
    HEATMAP_CANDLES,
    HEATMAP_TILES,
    OPEN_INTEREST,
    SIGNALS,
    WHALE_ALERTS,
    Table,
)
from btc_assets.service.config import ServiceConfig
from btc_assets.service.market_data import GateUnavailable, LruCache, MarketData, MarketRead
from btc_assets.service.metrics import ServiceMetrics

JSON = "application/json"
PNG = "image/png"
MARKET_TABLES = (OPEN_INTEREST, HEATMAP_TILES, HEATMAP_CANDLES, SIGNALS, WHALE_ALERTS)
FORMATS = ("json", "png")
OI_COLUMNS = ("ts", "open", "high", "low", "close")
CANDLE_COLUMNS = ("ts", "open", "high", "low", "close", "volume_usd")
DEFAULT_ALERT_WINDOW = timedelta(hours=24)
# How many of the newest heatmap days are tried, newest first, when no day is asked for.
HEATMAP_FALLBACK_DAYS = 7
SHOWN_REASONS = 5
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_TS = "%Y-%m-%dT%H:%M:%S%.3fZ"


class Refused(Exception):
    """A request answered with ``status`` and a JSON ``detail`` (plus ``extra`` fields)."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def json_body(payload: dict[str, Any], **fragments: str) -> bytes:
    """``payload`` as compact JSON, with ``fragments`` (JSON texts made by Polars, for the
    big column arrays: ten times faster than ``json.dumps`` on floats) as more fields."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    if fragments:
        more = ",".join(f"{json.dumps(k)}:{fragment}" for k, fragment in fragments.items())
        text = text[:-1] + ("," if payload else "") + more + "}"
    return text.encode()


def json_response(payload: dict[str, Any], status: int = 200, **fragments: str) -> Response:
    return Response(json_body(payload, **fragments), status, media_type=JSON)


def add_market_routes(app: FastAPI, config: ServiceConfig, metrics: ServiceMetrics) -> MarketData:
    """Register the market-data routes on ``app``; the reader they share (for /health)."""
    data = MarketData(config.lake_root, config.env, config.table_gate, config.reload_seconds)
    # heatmap bodies and PNGs, replay bodies: by content
    answers: LruCache[tuple[bytes, int]] = LruCache(64)
    drawing = threading.Lock()  # matplotlib is not thread-safe across figures' shared state

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return json_response({"detail": exc.detail, **exc.extra}, exc.status)

    app.add_exception_handler(Refused, refused)

    def read(table: Table, symbol: str, days: list[date]) -> MarketRead:
        try:
            return data.read(table, symbol, days)
        except GateUnavailable as exc:
            raise Refused(503, str(exc)) from exc

    @app.get("/replay/oi/{symbol}")
    def replay_oi(symbol: str, start: str | None = None, end: str | None = None) -> Response:
        """Open interest OHLC in USD (15m bars, ts = bar close) with ts in (start, end]:
        default the day before now; at most ``max_replay_days`` long."""
        name = known_symbol(config, symbol)
        until = parse_moment("end", end) if end is not None else config.now()
        since = parse_moment("start", start) if start is not None else until - timedelta(days=1)
        if since >= until:
            raise Refused(400, f"start {iso(since)} must be before end {iso(until)}")
        if until - since > timedelta(days=config.max_replay_days):
            raise Refused(
                400,
                f"the range ({iso(since)}, {iso(until)}] spans "
                f"{(until - since) / timedelta(days=1):.2f} days, more than "
                f"max_replay_days = {config.max_replay_days}",
            )
        found = read(OPEN_INTEREST, name, partition_days(since, until))
        missing = {d.isoformat(): why for d, why in found.skipped.items()}
        span = f"({iso(since)}, {iso(until)}]"
        if not found.used:
            raise Refused(
                404,
                f"no usable {OPEN_INTEREST.name} day for {name} in {span}: "
                f"{summary(found.skipped)}",
                missing_days=missing,
            )
        # A dashboard polls the same window: the answer is pinned by the range and the
        # content (sha256) of every day served, so it is encoded once.
        key = ("replay", name, since, until, *((d, w.sha256) for d, w in found.used.items()),
               *found.skipped.items())  # fmt: skip
        cached = answers.get(key)
        if cached is None:
            ts = pl.col("ts")
            rows = found.frame.filter((ts > since) & (ts <= until))
            payload = {
                "symbol": name,
                "start": iso(since),
                "end": iso(until),
                "rows": rows.height,
                "missing_days": missing,
                "source": found.source(OPEN_INTEREST.name, config.env, config.market_gate_state),
            }
            body = json_body(payload, columns=columns_json(rows, OI_COLUMNS))
            cached = answers.put(key, (body, rows.height))
        body, points = cached
        metrics.count_points("/replay/oi/{symbol}", points)
        return Response(body, media_type=JSON)

    @app.get("/heatmap/{symbol}")
    def heatmap(
        symbol: str,
        day: str | None = None,
        scope: str = "pair",
        fmt: str = Query("json", alias="format"),
    ) -> Response:
        """One UTC day's liquidation heatmap (default: the newest usable day) of ``scope``:
        tiles and candles as JSON, or the picture (``format=png``)."""
        name = known_symbol(config, symbol)
        scope = one_of("scope", scope, HEATMAP_SCOPES)
        fmt = one_of("format", fmt, FORMATS)
        tiles, skipped = heatmap_day(name, parse_day(day) if day is not None else None)
        chosen = next(iter(tiles.used))
        candles = read(HEATMAP_CANDLES, name, [chosen])
        candle_sha = candles.used[chosen].sha256 if chosen in candles.used else None
        # The day files are immutable and named by content: their sha256 pin the answer.
        key = (
            fmt,
            name,
            chosen,
            scope,
            tiles.used[chosen].sha256,
            candle_sha,
            tuple(skipped.items()),
        )
        cached = answers.get(key)
        if cached is None:
            with drawing if fmt == "png" else nullcontext():
                cached = answers.get(key) or answers.put(
                    key, heatmap_answer(name, chosen, scope, fmt, tiles, candles, skipped)
                )
        body, points = cached
        metrics.count_points("/heatmap/{symbol}", points)
        return Response(
            body,
            media_type=PNG if fmt == "png" else JSON,
            headers={"X-Heatmap-Day": chosen.isoformat()},
        )

    def heatmap_answer(
        name: str,
        chosen: date,
        scope: str,
        fmt: str,
        tiles: MarketRead,
        candles: MarketRead,
        skipped: dict[date, str],
    ) -> tuple[bytes, int]:
        """The body of a heatmap answer, and how many tiles and candles it holds."""
        of_scope = pl.col("scope") == scope
        tile_rows = tiles.frame.filter(of_scope).sort("ts", "price_level")
        candle_rows = candles.frame.filter(of_scope).sort("ts")
        points = tile_rows.height + candle_rows.height
        if fmt == "png":
            title = f"{name} liquidation heatmap ({scope}), {chosen.isoformat()} UTC"
            return heatmap_png(tile_rows, candle_rows, title), points
        gate = config.market_gate_state
        payload = {
            "symbol": name,
            "day": chosen.isoformat(),
            "scope": scope,
            "rows": tile_rows.height,
            "y_levels": tile_rows["price_level"].unique().sort().to_list(),
            "candles_missing": candles.skipped.get(chosen),
            "skipped_days": {d.isoformat(): why for d, why in skipped.items()},
            "source": {
                "tiles": tiles.source(HEATMAP_TILES.name, config.env, gate),
                "candles": candles.source(HEATMAP_CANDLES.name, config.env, gate),
            },
        }
        body = json_body(
            payload,
            tiles=columns_json(tile_rows, ("ts", "price_level", "intensity")),
            candles=columns_json(candle_rows, CANDLE_COLUMNS),
        )
        return body, points

    def heatmap_day(name: str, asked: date | None) -> tuple[MarketRead, dict[date, str]]:
        """The tiles of the day asked for, or of the newest usable day; the days passed over."""
        table = HEATMAP_TILES.name
        if asked is not None:
            found = read(HEATMAP_TILES, name, [asked])
            if asked not in found.used:
                raise Refused(
                    404,
                    f"no liquidation heatmap of {name} for {asked}: {table} {found.skipped[asked]}",
                )
            return found, {}
        present = data.days_present(table, name)
        if not present:
            raise Refused(404, f"no liquidation heatmap of {name}: {table} has no day for it")
        skipped: dict[date, str] = {}
        for day in reversed(present[-HEATMAP_FALLBACK_DAYS:]):
            found = read(HEATMAP_TILES, name, [day])
            if day in found.used:
                return found, skipped
            skipped[day] = found.skipped[day]
        raise Refused(
            404,
            f"no usable liquidation heatmap of {name} in the newest "
            f"{len(skipped)} day(s): {summary(skipped)}",
        )

    def alerts(
        endpoint: str,
        table: Table,
        since: str | None,
        symbol: str | None,
        severity: str | None = None,
        kind: str | None = None,
    ) -> Response:
        now = config.now()
        after = parse_moment("since", since) if since is not None else now - DEFAULT_ALERT_WINDOW
        limit = timedelta(days=config.max_alert_lookback_days)
        if now - after > limit:
            raise Refused(
                400,
                f"since {iso(after)} reaches back more than "
                f"max_alert_lookback_days = {config.max_alert_lookback_days} "
                f"(the earliest allowed is {iso(now - limit)})",
            )
        kept = SEVERITIES
        if severity is not None:
            kept = SEVERITIES[SEVERITIES.index(one_of("severity", severity, SEVERITIES)) :]
        names = [known_symbol(config, symbol)] if symbol is not None else list(config.symbols)
        days = partition_days(after, now) if after < now else []
        frames, missing, sources = [], {}, {}
        for name in names:
            found = read(table, name, days)
            frames.append(found.frame)
            if found.skipped:
                missing[name] = {d.isoformat(): why for d, why in found.skipped.items()}
            sources[name] = found.source(table.name, config.env, config.market_gate_state)
        rows = pl.concat(frames).filter((pl.col("ts") > after) & pl.col("severity").is_in(kept))
        if kind is not None:
            rows = rows.filter(pl.col("kind").is_in([k.strip() for k in kind.split(",")]))
        rows = rows.sort(
            ["ts", "symbol", "kind", "dedupe_key"], descending=[True, False, False, False]
        )
        metrics.count_points(endpoint, rows.height)
        return json_response(
            {
                "since": iso(after),
                "until": iso(now),
                "rows": rows.height,
                "alerts": alert_rows(rows),
                "missing_days": missing,
                "source": sources,
            }
        )

    @app.get("/signals")
    def signals(
        since: str | None = None,
        severity: str | None = None,
        symbol: str | None = None,
        kind: str | None = None,
    ) -> Response:
        """Signals with ts > since (default 24 h ago) of at least ``severity``, newest first;
        ``kind`` may list several, comma-separated."""
        return alerts("/signals", SIGNALS, since, symbol, severity, kind)

    @app.get("/whales/alerts")
    def whale_alerts(since: str | None = None, symbol: str | None = None) -> Response:
        """Whale positions and events with ts > since (default 24 h ago), newest first."""
        return alerts("/whales/alerts", WHALE_ALERTS, since, symbol)

    return data


# ---------------------------------------------------------------------- parameters


def known_symbol(config: ServiceConfig, symbol: str) -> str:
    name = symbol.strip().upper()
    if name not in config.symbols:
        raise Refused(
            404, f"unknown symbol {symbol!r}: configured symbols are {list(config.symbols)}"
        )
    return name


def one_of(name: str, value: str, choices: tuple[str, ...]) -> str:
    found = value.strip().lower()
    if found not in choices:
        raise Refused(400, f"{name}={value!r}: expected one of {list(choices)}")
    return found


def parse_moment(name: str, text: str) -> datetime:
    """An ISO date (its midnight) or date-time; naive means UTC; returned in UTC."""
    raw = text.strip()
    try:
        if _DATE.fullmatch(raw):
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise Refused(
            400,
            f"{name}={text!r}: expected an ISO date (2024-03-10) or date-time "
            "(2024-03-10T12:00:00Z; UTC when no offset is given)",
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_day(text: str) -> date:
    raw = text.strip()
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise Refused(400, f"day={text!r}: expected a UTC day as YYYY-MM-DD") from None


def partition_days(since: datetime, until: datetime) -> list[date]:
    """The partition days holding ts in (since, until]: day D holds (D 00:00, D+1 00:00]."""
    first = since.date()
    last = (until - timedelta(milliseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# ---------------------------------------------------------------------- answers


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def summary(reasons: dict[date, str]) -> str:
    shown = "; ".join(f"{d}: {why}" for d, why in list(reasons.items())[:SHOWN_REASONS])
    more = len(reasons) - SHOWN_REASONS
    return shown + (f"; and {more} more day(s) (see missing_days)" if more > 0 else "")


def _json_safe(frame: pl.DataFrame, names: tuple[str, ...]) -> pl.DataFrame:
    """ts as ISO strings, NaN and infinities as null (JSON has neither)."""
    out = []
    for name in names:
        column = pl.col(name)
        if name == "ts":
            out.append(column.dt.strftime(_ISO_TS))
        elif frame.schema[name].is_float():
            out.append(pl.when(column.is_finite()).then(column).otherwise(None).alias(name))
        else:
            out.append(column)
    return frame.select(out)


def columns_json(frame: pl.DataFrame, names: tuple[str, ...]) -> str:
    """``{"column": [values...], ...}`` for ``names`` of ``frame``, written by Polars."""
    return _json_safe(frame, names).select(pl.all().implode()).write_ndjson().strip()


def alert_rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    rows = _json_safe(frame, tuple(frame.columns)).to_dicts()
    for row in rows:
        # a details text that is not JSON is kept as the writer stored it, not dropped
        with suppress(ValueError):
            row["details"] = json.loads(row["details"]) if row["details"] is not None else None
    return rows
