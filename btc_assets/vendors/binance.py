"""Binance spot and USD-M futures market data as frames in the ``core.schema`` contract.

A plain client (no Dagster): the Dagster resource wraps it. Windows are right-closed on the
bar's close-labelled ``ts`` = open time + interval, so ``spot_klines(s, "1m", D, D+1)``
returns the 1440 bars opening D 00:00..23:59, in exactly 2 requests (1000 + 440); USD-M
1m takes 1 request per day (limit 1500) and funding 1.

Failures: an unknown symbol (-1121) raises :class:`BinanceSymbolError` and a path the host
does not serve (HTTP 404) :class:`BinanceEndpointMissing`, both :class:`VendorRefused` (a
definite "no", never retried); -1000/-1001/-1003/-1007/-1008 are retried wherever they
come, HTTP 200 included, like 408/418/429/5xx, timeouts and resets (``vendors/retry.py``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx
import polars as pl

from btc_assets.clock import epoch_ms
from btc_assets.core.schema import (
    FUNDING_SCHEMA,
    KLINE_SCHEMA,
    METRICS_SCHEMA,
    conform,
    empty_frame,
    to_ms,
)
from btc_assets.vendors.binance_parse import (
    kline_frame,
    parse_funding_rows,
    parse_kline_rows,
    parse_open_interest_rows,
)
from btc_assets.vendors.binance_symbols import (
    FuturesSymbolInfo,
    SpotSymbolInfo,
    parse_futures_exchange_info,
    parse_spot_exchange_info,
)
from btc_assets.vendors.errors import (
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets.vendors.hosts import LIVE_BINANCE_FUTURES_URL, LIVE_BINANCE_SPOT_URL
from btc_assets.vendors.http import VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget, budget_name
from btc_assets.vendors.shared_budget import WindowStore

log = logging.getLogger("btc_assets.vendors")

VENDOR = "binance"
SPOT_KLINES = "/api/v3/klines"
FUTURES_KLINES = "/fapi/v1/klines"
CONTINUOUS_KLINES = "/fapi/v1/continuousKlines"
FUNDING_RATE = "/fapi/v1/fundingRate"
OPEN_INTEREST_HIST = "/futures/data/openInterestHist"
OI_LIMIT = 500
OI_PERIODS = ("5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d")
FUTURES_EXCHANGE_INFO = "/fapi/v1/exchangeInfo"
SPOT_EXCHANGE_INFO = "/api/v3/exchangeInfo"
FUTURES_EXCHANGE_INFO_WEIGHT, SPOT_EXCHANGE_INFO_WEIGHT = 1, 20
SPOT_LIMIT, FUTURES_LIMIT, FUNDING_LIMIT = 1000, 1500, 1000
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
SPOT_KLINES_WEIGHT = 2
MINUTE_MS = 60_000
# Fixed-length intervals only: 3d/1w/1M bars do not align on epoch multiples.
INTERVAL_MS: dict[str, int] = {
    "1s": 1_000, "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000,
    "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000,
    "6h": 21_600_000, "8h": 28_800_000, "12h": 43_200_000, "1d": 86_400_000,
}  # fmt: skip
# Codes Binance's error list says to retry ("unknown error", "internal error; please try
# again", request weight, backend timeout, server overloaded): retried in any status,
# HTTP 200 included. Every other code is a definite answer.
TRANSIENT_CODES: dict[int | str, type[VendorError]] = {
    -1000: VendorUnavailable, -1001: VendorUnavailable, -1003: VendorRateLimited,
    -1007: VendorUnavailable, -1008: VendorUnavailable,
}  # fmt: skip


class BinanceSymbolError(VendorRefused):
    """Binance does not list the symbol (-1121) on this market."""


class BinanceEndpointMissing(VendorRefused):
    """HTTP 404: the host does not serve this path (a spot-only mirror asked for fapi)."""


class BinanceGeoBlocked(VendorError):
    """HTTP 451: Binance refuses requests from this location."""


def futures_klines_weight(limit: int) -> int:
    """USD-M kline weight by page size: [1,100) 1, [100,500) 2, [500,1000] 5, above 10."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


class BinanceClient:
    """Spot (``/api/v3``) and USD-M futures (``/fapi/v1``) market data.

    ``transport`` lets tests and the sandbox answer in-process; ``now_ms`` is the clock
    that decides which candle is still open (dropped: closeTime >= now). ``max_wait_seconds``
    bounds one request's retries (wire time plus waits); ``sleep``/``clock`` make them fake.
    """

    def __init__(
        self,
        spot_base_url: str = LIVE_BINANCE_SPOT_URL,
        futures_base_url: str = LIVE_BINANCE_FUTURES_URL,
        *,
        transport: httpx.BaseTransport | None = None,
        now_ms: Callable[[], int] = epoch_ms,
        api_key: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_wait_seconds: float = 120.0,
        spot_weight_limit: int = 6000,
        futures_weight_limit: int = 2400,
        funding_limit_per_5m: int = 500,
        futures_data_limit_per_5m: int = 1000,
        weight_safety: float = 0.9,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        budget_store: WindowStore | None = None,
    ) -> None:
        self.now_ms = now_ms
        headers = {"X-MBX-APIKEY": api_key} if api_key else {}

        def budget(limit: int, window: float, header: str | None, name: str) -> WeightBudget:
            return WeightBudget(
                limit, window, header=header, safety=weight_safety, clock=clock, sleep=sleep,
                name=name, store=budget_store,
            )  # fmt: skip

        def http(base_url: str, setting: str, limiter: WeightBudget) -> VendorHttpClient:
            return VendorHttpClient(
                VENDOR, base_url, transport=transport, timeout=timeout, max_retries=max_retries,
                backoff_base=backoff_base, backoff_cap=backoff_cap,
                max_wait_seconds=max_wait_seconds, headers=headers, limiter=limiter, sleep=sleep,
                clock=clock, base_url_setting=setting, error_hook=binance_error_hook(setting),
                transient_codes=TRANSIENT_CODES,
            )  # fmt: skip

        # Named by host: BinanceAccountClient charges the same fapi weight count.
        spot, fapi = spot_base_url, futures_base_url
        self.spot_budget = budget(spot_weight_limit, 60, WEIGHT_HEADER, budget_name(spot, "weight"))
        self.futures_budget = budget(
            futures_weight_limit, 60, WEIGHT_HEADER, budget_name(fapi, "weight")
        )
        self.funding_budget = budget(
            funding_limit_per_5m, 300, None, budget_name(fapi, "fundingRate")
        )
        self.futures_data_budget = budget(
            futures_data_limit_per_5m, 300, None, budget_name(fapi, "futures/data")
        )
        self.spot = http(spot_base_url, "BINANCE_SPOT_BASE_URL", self.spot_budget)
        self.futures = http(futures_base_url, "BINANCE_FUTURES_BASE_URL", self.futures_budget)

    def __enter__(self) -> BinanceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def request_count(self) -> int:
        """Requests sent on the wire so far, retries included."""
        return self.spot.requests_sent + self.futures.requests_sent

    def close(self) -> None:
        self.spot.close()
        self.futures.close()

    def spot_klines(
        self, symbol: str, interval: str, start: datetime, end: datetime
    ) -> pl.DataFrame:
        """Spot bars with ``ts`` in ``(start, end]`` (``KLINE_SCHEMA``)."""
        params = {"symbol": symbol, "interval": interval}
        return self._klines(self.spot, SPOT_KLINES, params, symbol, interval, start, end,
                            SPOT_LIMIT, SPOT_KLINES_WEIGHT)  # fmt: skip

    def futures_klines(
        self, symbol: str, interval: str, start: datetime, end: datetime, continuous: bool = False
    ) -> pl.DataFrame:
        """USD-M perpetual bars with ``ts`` in ``(start, end]`` (``KLINE_SCHEMA``).

        ``continuous`` reads the stitched PERPETUAL series (``pair=``) instead of the symbol.
        """
        if continuous:
            path, params = CONTINUOUS_KLINES, {"pair": symbol, "contractType": "PERPETUAL"}
        else:
            path, params = FUTURES_KLINES, {"symbol": symbol}
        params["interval"] = interval
        weight = futures_klines_weight(FUTURES_LIMIT)
        return self._klines(
            self.futures, path, params, symbol, interval, start, end, FUTURES_LIMIT, weight
        )

    def _forward_pages(
        self,
        path: str,
        base: dict[str, Any],
        first_ms: int,
        last_ms: int,
        limit: int,
        budget: WeightBudget,
        parse: Callable[[Any, str], pl.DataFrame],
    ) -> list[pl.DataFrame]:
        """Every page of ``[first_ms, last_ms]`` of a weight-0 USD-M endpoint with its own
        request budget, oldest first: each page starts after the newest ``time_ms`` of the
        last, until a short or empty page. ``parse`` turns rows into a frame with
        ``time_ms``; its error is re-raised naming the request."""
        cursor = first_ms
        frames: list[pl.DataFrame] = []
        while cursor <= last_ms:
            params = {**base, "startTime": cursor, "endTime": last_ms, "limit": limit}
            rows = self.futures.get_json(path, params, weight=0, budgets=[(budget, 1)], expect=list)
            try:
                frame = parse(rows, path)
            except VendorResponseError as exc:
                shown = self.futures.shown_params(params)
                raise VendorResponseError(
                    VENDOR, path, shown, status=200, message=exc.message
                ) from None
            if frame.height:
                frames.append(frame)
            if len(rows) < limit or not frame.height:
                break
            newest = int(frame["time_ms"].max())  # type: ignore[arg-type]
            cursor = _advance(self.futures, path, params, cursor, newest + 1)
        return frames

    def funding_rate(self, symbol: str, start: datetime, end: datetime) -> pl.DataFrame:
        """Funding settlements with minute-rounded ``ts`` in ``(start, end]`` (FUNDING_SCHEMA)."""
        start_ms, end_ms = to_ms(start), to_ms(end)
        # fundingTime rounds to ts > start iff it is >= start + 30 s, and to ts <= end iff
        # it is < end + 30 s: this catches a settlement at `end` stamped a few ms late.
        frames = self._forward_pages(
            FUNDING_RATE,
            {"symbol": symbol},
            start_ms + MINUTE_MS // 2,
            end_ms + MINUTE_MS // 2 - 1,
            FUNDING_LIMIT,
            self.funding_budget,
            parse_funding_rows,
        )
        if not frames:
            return empty_frame(FUNDING_SCHEMA)
        out = (
            pl.concat(frames, how="diagonal_relaxed")
            .filter((pl.col("symbol") == symbol) | (pl.col("symbol") == ""))
            .with_columns(
                ((pl.col("time_ms") + MINUTE_MS // 2) // MINUTE_MS * MINUTE_MS)
                .cast(pl.Datetime("ms", "UTC"))
                .alias("ts"),
                pl.lit(symbol).alias("symbol"),
            )
            .unique(subset="ts", keep="first", maintain_order=True)
            .filter((pl.col("ts") > start) & (pl.col("ts") <= end))
            .sort("ts")
        )
        return conform(out, FUNDING_SCHEMA)

    def open_interest_hist(
        self, symbol: str, start: datetime, end: datetime, period: str = "5m"
    ) -> pl.DataFrame:
        """Open-interest snapshots with ``ts`` (= the snapshot time) in ``(start, end]``, in
        ``METRICS_SCHEMA`` with the ratio columns null (this endpoint has none).

        Binance keeps the latest 30 days only: older parts of the window come back empty
        (the archive's ``metrics`` files hold them). 500 rows a page, ~1.7 days of 5m.
        """
        if period not in OI_PERIODS:
            raise ValueError(f"period {period!r} not supported; use one of {list(OI_PERIODS)}")
        frames = self._forward_pages(
            OPEN_INTEREST_HIST,
            {"symbol": symbol, "period": period},
            to_ms(start) + 1,
            to_ms(end),
            OI_LIMIT,
            self.futures_data_budget,
            parse_open_interest_rows,
        )
        if not frames:
            return empty_frame(METRICS_SCHEMA)
        ratios = [c for c in METRICS_SCHEMA if "ratio" in c]
        out = (
            pl.concat(frames)
            .with_columns(
                pl.col("time_ms").cast(pl.Datetime("ms", "UTC")).alias("ts"),
                pl.lit(symbol).alias("symbol"),
                *[pl.lit(None, pl.Float64).alias(c) for c in ratios],
            )
            .unique(subset="ts", keep="first", maintain_order=True)
            .filter((pl.col("ts") > start) & (pl.col("ts") <= end))
            .sort("ts")
        )
        return conform(out, METRICS_SCHEMA)

    def futures_exchange_info(self) -> dict[str, FuturesSymbolInfo]:
        """Every USD-M contract by symbol (``GET /fapi/v1/exchangeInfo``, weight 1; the
        endpoint ignores a symbol filter, so this is the whole list)."""
        payload = self.futures.get_json(
            FUTURES_EXCHANGE_INFO, {}, weight=FUTURES_EXCHANGE_INFO_WEIGHT, expect=dict
        )
        return parse_futures_exchange_info(payload, FUTURES_EXCHANGE_INFO)

    def spot_exchange_info(self, symbols: Sequence[str] | None = None) -> dict[str, SpotSymbolInfo]:
        """Spot pairs by symbol (``GET /api/v3/exchangeInfo``, weight 20): all of them, or
        the named ones (one that spot does not list makes the whole call -1121, raised as
        :class:`BinanceSymbolError`; ask for all to learn which pairs exist)."""
        params = {"symbols": json.dumps(list(symbols), separators=(",", ":"))} if symbols else {}
        payload = self.spot.get_json(
            SPOT_EXCHANGE_INFO, params, weight=SPOT_EXCHANGE_INFO_WEIGHT, expect=dict
        )
        return parse_spot_exchange_info(payload, SPOT_EXCHANGE_INFO)

    def _klines(
        self,
        http: VendorHttpClient,
        path: str,
        params: dict[str, Any],
        symbol: str,
        interval: str,
        start: datetime,
        end: datetime,
        limit: int,
        weight: int,
    ) -> pl.DataFrame:
        step = INTERVAL_MS.get(interval)
        if step is None:
            raise ValueError(f"interval {interval!r} not supported; use one of {list(INTERVAL_MS)}")
        start_ms, end_ms = to_ms(start), to_ms(end)
        # ts = open + step in (start, end]  <=>  open in (start - step, end - step]
        cursor = start_ms // step * step
        last_open_bound = end_ms // step * step - 1
        now = self.now_ms()
        frames: list[pl.DataFrame] = []
        empty_retry = True
        while cursor <= last_open_bound:
            page = {**params, "startTime": cursor, "endTime": last_open_bound, "limit": limit}
            rows = http.get_json(path, page, weight=weight, expect=list)
            if not rows:
                if empty_retry and cursor + step <= now:
                    # Closed bars should exist here; one empty page is more often a vendor
                    # hiccup than missing history, and one retry costs little.
                    empty_retry = False
                    log.warning("%s %s: empty page at %s; asking once more",
                                VENDOR, http.describe(path, page), cursor)  # fmt: skip
                    continue
                break
            try:
                frame = parse_kline_rows(rows, path)
            except VendorResponseError as exc:  # say which request brought the bad rows
                shown = http.shown_params(page)
                raise VendorResponseError(
                    VENDOR, path, shown, status=200, message=exc.message
                ) from None
            frames.append(frame)
            last_open = int(frame["open_ms"].max())  # type: ignore[arg-type]
            if len(rows) < limit or last_open + step > last_open_bound:
                break
            cursor = _advance(http, path, page, cursor, last_open + 1)
        if not frames:
            return empty_frame(KLINE_SCHEMA)
        # The still-open candle would change later: only closed ones.
        closed = pl.concat(frames).filter(pl.col("close_ms") < now)
        out = kline_frame(closed, symbol, step).filter(
            (pl.col("ts") > start) & (pl.col("ts") <= end)
        )
        expected = max(0, (min(last_open_bound, now - step) - start_ms // step * step) // step + 1)
        if out.height < expected:
            log.warning(
                "%s %s %s %s (%s, %s]: %d of %d bars (%d missing)", VENDOR, path, symbol,
                interval, start, end, out.height, expected, expected - out.height,
            )  # fmt: skip
        return out


def binance_error_hook(setting: str) -> Callable[[VendorError], VendorError]:
    """Turn Binance's generic failures into errors that say what to do."""

    def refine(err: VendorError) -> VendorError:
        if err.code == -1121:
            params = err.params or {}
            symbol = params.get("symbol") or params.get("pair") or params.get("symbols")
            return err.evolve(
                BinanceSymbolError,
                f"symbol {symbol!r} is not listed on this Binance market; check the symbol "
                "(BTC_ASSETS_SYMBOLS) and the base URL",
            )
        if err.status == 404:
            return err.evolve(
                BinanceEndpointMissing,
                f"this host does not serve {err.endpoint} (HTTP 404); check {setting}: a "
                "spot-only host (data-api.binance.vision, api.binance.us) has no /fapi paths",
            )
        if err.status == 451:
            return err.evolve(
                BinanceGeoBlocked,
                "Binance refuses requests from this location (HTTP 451). Use a host that "
                "serves it: api.binance.us or data-api.binance.vision for spot, or another "
                f"reachable host, via {setting} (BINANCE_SPOT_BASE_URL / "
                "BINANCE_FUTURES_BASE_URL)",
            )
        return err

    return refine


def _advance(
    http: VendorHttpClient, path: str, page: dict[str, Any], cursor: int, following: int
) -> int:
    """The next page's cursor; a full page that does not move past the cursor would make
    the pager ask the same question for ever, so it is refused, naming the request."""
    if following <= cursor:
        raise VendorResponseError(
            VENDOR, path, http.shown_params(page), status=200,
            message=f"a full page did not advance past startTime={cursor} "
            f"(its newest row gives {following}); refusing to page for ever",
        )  # fmt: skip
    return following
