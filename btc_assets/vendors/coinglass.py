"""CoinGlass v4 history (price, OI, funding, taker volume, liquidations) as contract frames.

A plain client (no Dagster). Every method takes the project symbol first (``BTCUSDT``: the
table's ``symbol`` column, and the pair of pair endpoints unless ``pair=`` differs); coin
endpoints also take the coin (``BTC``). Rows are labelled by close time, ``ts = time +
interval``, kept when ``ts`` is in ``(start, end]`` and the bar has closed (``ts <= now``).
Which end of a window CoinGlass serves past ``limit`` rows is unconfirmed, so each request
asks for at most ``limit=1000`` bars: 365 days at 15m = ceil(35040 / 1000) = 36 requests.

Errors mostly come as HTTP 200 with a non-"0" string ``code``: "401 Upgrade plan" raises
:class:`CoinGlassPlanError`, code or HTTP 404 :class:`CoinGlassEndpointMissing`, an unknown
symbol :class:`CoinGlassSymbolError` (all three :class:`VendorRefused`, never retried), a
rejected key :class:`CoinGlassKeyInvalid`; code 429/5xx is retried like that HTTP status, in
the one retry loop of the request (``vendors/retry.py``); anything else is a
:class:`VendorError` with the vendor's message. No key at all raises
:class:`CoinGlassKeyMissing` before any request.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Literal

import httpx
import polars as pl

from btc_assets.clock import epoch_ms
from btc_assets.core.schema import (
    COINGLASS_AGG_TAKER_SCHEMA,
    COINGLASS_FUNDING_SCHEMA,
    COINGLASS_LIQUIDATION_SCHEMA,
    COINGLASS_OI_SCHEMA,
    COINGLASS_PRICE_SCHEMA,
    COINGLASS_TAKER_SCHEMA,
    TS,
    conform,
    to_ms,
)
from btc_assets.vendors.coinglass_parse import parse_rows
from btc_assets.vendors.coinglass_plan import CoinGlassHistoryLimit as CoinGlassHistoryLimit
from btc_assets.vendors.coinglass_plan import HistoryWindow
from btc_assets.vendors.coinglass_structure import (
    COIN_HEATMAP,
    PAIR_HEATMAP,
    WHALE_ALERT,
    WHALE_POSITION,
    CoinGlassStructureMixin,
)
from btc_assets.vendors.errors import (
    MASK,
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets.vendors.http import SessionClient, VendorHttpClient
from btc_assets.vendors.ratelimit import WeightBudget, budget_name
from btc_assets.vendors.shared_budget import WindowStore

log = logging.getLogger("btc_assets.vendors")

VENDOR = "coinglass"
PRICE_HISTORY = "/api/futures/price/history"
OI_HISTORY = "/api/futures/open-interest/aggregated-history"
FUNDING_OI_WEIGHT = "/api/futures/funding-rate/oi-weight-history"
FUNDING_VOL_WEIGHT = "/api/futures/funding-rate/vol-weight-history"
PAIR_TAKER = "/api/futures/v2/taker-buy-sell-volume/history"
SPOT_AGG_TAKER = "/api/spot/aggregated-taker-buy-sell-volume/history"
FUTURES_AGG_TAKER = "/api/futures/aggregated-taker-buy-sell-volume/history"
LIQUIDATION = "/api/futures/liquidation/aggregated-history"
# Market structure (heatmaps, Hyperliquid whales): methods in coinglass_structure.py.
COINGLASS_PAIR_HEATMAP, COINGLASS_COIN_HEATMAP = PAIR_HEATMAP, COIN_HEATMAP
HYPERLIQUID_WHALE_ALERT, HYPERLIQUID_WHALE_POSITION = WHALE_ALERT, WHALE_POSITION
PAGE_LIMIT = 1000
KEY_HEADER = "CG-API-KEY"
USE_HEADER, MAX_HEADER = "API-KEY-USE-LIMIT", "API-KEY-MAX-LIMIT"
# Epoch-aligned intervals only (CoinGlass also lists 1w, whose bars do not align so).
INTERVAL_MS: dict[str, int] = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000,
}  # fmt: skip
# Body codes in an HTTP 200 that mean "try again", like the HTTP status of the same number.
RETRY_CODES: dict[str, type[VendorError]] = {
    "429": VendorRateLimited, "408": VendorUnavailable, "500": VendorUnavailable,
    "502": VendorUnavailable, "503": VendorUnavailable, "504": VendorUnavailable,
}  # fmt: skip
FUNDING_PATHS = {"oi": FUNDING_OI_WEIGHT, "vol": FUNDING_VOL_WEIGHT}
_OHLC = {"open": "open", "high": "high", "low": "low", "close": "close"}


class CoinGlassKeyMissing(VendorError, VendorConfigError):
    """No API key configured: raised before any request is sent."""


class CoinGlassKeyInvalid(VendorError):
    """CoinGlass rejected the key (unknown, revoked, or not seen in ``CG-API-KEY``)."""


class CoinGlassPlanError(VendorRefused):
    """The key's plan does not cover this endpoint or interval ("Upgrade plan")."""


class CoinGlassEndpointMissing(VendorRefused):
    """Code or HTTP 404: CoinGlass does not serve this path ("Endpoint not found")."""


class CoinGlassSymbolError(VendorRefused):
    """CoinGlass does not list the symbol or coin on this endpoint ("Unsupported symbol")."""


class _PlanBudget(WeightBudget):
    """Requests per minute: counted locally, corrected by the server's own count
    (``API-KEY-USE-LIMIT``, which other processes on the same key add to), and lowered to
    ``API-KEY-MAX-LIMIT`` when the key's plan allows fewer than configured."""

    def observe(self, headers: httpx.Headers | Mapping[str, str]) -> None:
        super().observe(headers)
        raw = str(headers.get(MAX_HEADER) or "").strip()
        if raw.isdigit() and 0 < int(raw) < self.limit:
            log.warning("coinglass: the key's plan allows %s requests/minute, not the %d "
                        "configured; following the plan", raw, self.limit)  # fmt: skip
            self.limit = int(raw)


def _refine(err: VendorError) -> VendorError:
    """CoinGlass's generic refusals as errors that say what to do (final errors only)."""
    if type(err) is not VendorError:
        return err
    text = err.message.lower()
    if any(s in text for s in ("api key", "apikey", "api-key")) or err.status in (401, 403):
        return err.evolve(
            CoinGlassKeyInvalid,
            f"CoinGlass did not accept the key sent in {KEY_HEADER} (not shown); check "
            "COINGLASS_API_KEY against the key in your CoinGlass account",
        )
    if re.search(r"\bupgrade\b|\bplan\b", text):
        interval = (err.params or {}).get("interval", "?")
        return err.evolve(
            CoinGlassPlanError,
            f"{err.endpoint} at interval={interval} needs a higher CoinGlass plan than this "
            "key's (history intervals: Hobbyist 4h and up, Startup 30m and up, Standard and "
            "above all; 15m needs Standard); upgrade the plan or ask for a coarser interval",
        )
    if err.status == 404 or str(err.code).strip() == "404":
        return err.evolve(
            CoinGlassEndpointMissing,
            f"CoinGlass does not serve {err.endpoint}; check COINGLASS_BASE_URL (the v4 API "
            "is open-api-v4.coinglass.com, paths under /api/)",
        )
    if re.search(r"\b(unsupported|unknown|invalid) (symbol|coin)\b", text):
        symbol = (err.params or {}).get("symbol", "?")
        return err.evolve(
            CoinGlassSymbolError,
            f"CoinGlass does not list symbol={symbol} on {err.endpoint}; pair endpoints take "
            "the pair (BTCUSDT), coin endpoints the coin (BTC)",
        )
    return err


def _envelope_error(body: Any) -> bool:
    """A CoinGlass answer is an error when its envelope's ``code`` is not "0" (a missing
    ``code`` is a shape error, found by the pager)."""
    return not isinstance(body, dict) or ("code" in body and str(body["code"]).strip() != "0")


class CoinGlassClient(CoinGlassStructureMixin, SessionClient):
    """CoinGlass v4 (``open-api-v4.coinglass.com``) history endpoints, and (from the mixin)
    the liquidation heatmaps and Hyperliquid whales.

    ``requests_per_minute`` is the plan's limit (Hobbyist 30, Startup 80, Standard 300,
    Professional 1200); the client stays under 90 % of it. ``debug`` logs (INFO) each
    request's parameters and the answer's top-level and first-row keys, never the key.
    ``max_wait_seconds`` bounds one request's retries (wire time plus waits); a rate-limit
    answer naming no wait waits for the next minute, CoinGlass's limit window.
    ``history_days`` is the plan's 15m history depth (Standard 90, Professional 180; None:
    unlimited): older 15m-or-shorter bars are refused without a request
    (:class:`CoinGlassHistoryLimit`, see ``coinglass_plan``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        requests_per_minute: int = 300,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_wait_seconds: float = 120.0,
        debug: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        now_ms: Callable[[], int] = epoch_ms,
        rng: random.Random | None = None,
        history_days: int | None = None,
        budget_store: WindowStore | None = None,
    ) -> None:
        self.history = HistoryWindow(history_days)
        self.api_key = (api_key or "").strip() or None
        self.debug, self.now_ms = debug, now_ms
        headers = {"accept": "application/json"}
        if self.api_key:
            headers[KEY_HEADER] = self.api_key
        self._shown_headers = ", ".join(
            f"{k}={MASK if k == KEY_HEADER else v}" for k, v in headers.items()
        )
        self.budget = _PlanBudget(
            requests_per_minute, 60, header=USE_HEADER, clock=clock, sleep=sleep,
            name=budget_name(base_url, "requests"), store=budget_store,
        )  # fmt: skip
        self.http = VendorHttpClient(
            VENDOR, base_url, transport=transport, timeout=timeout, max_retries=max_retries,
            backoff_base=backoff_base, backoff_cap=backoff_cap, max_wait_seconds=max_wait_seconds,
            headers=headers, limiter=self.budget, sleep=sleep, clock=clock,
            base_url_setting="COINGLASS_BASE_URL", error_hook=_refine, rng=rng,
            transient_codes=RETRY_CODES, error_body=_envelope_error,
            wait_window_on_rate_limit=True,
        )  # fmt: skip

    def first_full_day(self, interval: str = "15m") -> date | None:
        """The first UTC day the plan serves whole at ``interval`` (None: no limit)."""
        return self.history.first_full_day(self.now_ms(), INTERVAL_MS[interval])

    # --- the tables ---------------------------------------------------------------------

    def price_history(
        self, symbol: str, exchange: str, start: datetime, end: datetime,
        interval: str = "15m", *, pair: str | None = None,
    ) -> pl.DataFrame:  # fmt: skip
        """Futures pair OHLC and USD volume on ``exchange`` (COINGLASS_PRICE_SCHEMA)."""
        params = {"exchange": exchange, "symbol": pair or symbol}
        fields = {**_OHLC, "volume_usd": "volume_usd"}
        frame = self._history(PRICE_HISTORY, params, start, end, interval, fields)
        return _table(frame, symbol, COINGLASS_PRICE_SCHEMA)

    def open_interest_history(
        self, symbol: str, coin: str, start: datetime, end: datetime, interval: str = "15m"
    ) -> pl.DataFrame:
        """Open interest aggregated over exchanges, USD OHLC (COINGLASS_OI_SCHEMA)."""
        params = {"symbol": coin, "unit": "usd"}
        frame = self._history(OI_HISTORY, params, start, end, interval, _OHLC)
        return _table(frame, symbol, COINGLASS_OI_SCHEMA)

    def funding_history(
        self, symbol: str, coin: str, start: datetime, end: datetime,
        weighting: Literal["oi", "vol"], interval: str = "15m",
    ) -> pl.DataFrame:  # fmt: skip
        """OI- or volume-weighted funding: each bar's close, percent → fraction
        (COINGLASS_FUNDING_SCHEMA, ``funding_source`` coinglass_oi_weight / _vol_weight)."""
        if weighting not in FUNDING_PATHS:
            raise ValueError(f"weighting {weighting!r}: expected 'oi' or 'vol'")
        path = FUNDING_PATHS[weighting]
        frame = self._history(path, {"symbol": coin}, start, end, interval, {"close": "pct"})
        frame = frame.with_columns(
            (pl.col("pct") / 100.0).alias("funding_rate"),  # CoinGlass serves percent
            pl.lit(f"coinglass_{weighting}_weight").alias("funding_source"),
        )
        return _table(frame, symbol, COINGLASS_FUNDING_SCHEMA)

    def pair_taker_history(
        self, symbol: str, exchange: str, start: datetime, end: datetime,
        interval: str = "15m", *, pair: str | None = None,
    ) -> pl.DataFrame:  # fmt: skip
        """Taker buy/sell USD of one futures pair on ``exchange`` (COINGLASS_TAKER_SCHEMA)."""
        params = {"exchange": exchange, "symbol": pair or symbol}
        fields = {k: k for k in ("taker_buy_volume_usd", "taker_sell_volume_usd")}
        frame = self._history(PAIR_TAKER, params, start, end, interval, fields)
        return _table(frame, symbol, COINGLASS_TAKER_SCHEMA)

    def aggregated_taker_history(
        self, symbol: str, coin: str, exchange_list: str | Sequence[str], start: datetime,
        end: datetime, interval: str = "15m",
    ) -> pl.DataFrame:  # fmt: skip
        """Coin taker buy/sell USD over ``exchange_list``, spot and futures, joined on ``ts``
        (COINGLASS_AGG_TAKER_SCHEMA); a bar one side lacks stays null on that side."""
        frames = []
        for market, path in (("spot", SPOT_AGG_TAKER), ("futures", FUTURES_AGG_TAKER)):
            params = {"exchange_list": _exchange_list(exchange_list), "symbol": coin}
            fields = {f"aggregated_{side}_volume_usd": f"{market}_{side}_volume_usd"
                      for side in ("buy", "sell")}  # fmt: skip
            frames.append(self._history(path, params, start, end, interval, fields))
        joined = frames[0].join(frames[1], on="ts", how="full", coalesce=True).sort("ts")
        return _table(joined, symbol, COINGLASS_AGG_TAKER_SCHEMA)

    def liquidation_history(
        self, symbol: str, coin: str, exchange_list: str | Sequence[str], start: datetime,
        end: datetime, interval: str = "15m",
    ) -> pl.DataFrame:  # fmt: skip
        """Long/short liquidations in USD over ``exchange_list`` (COINGLASS_LIQUIDATION_SCHEMA)."""
        params = {"exchange_list": _exchange_list(exchange_list), "symbol": coin}
        fields = {f"aggregated_{side}_liquidation_usd": f"{side}_liquidation_usd"
                  for side in ("long", "short")}  # fmt: skip
        frame = self._history(LIQUIDATION, params, start, end, interval, fields)
        return _table(frame, symbol, COINGLASS_LIQUIDATION_SCHEMA)

    # --- paging and the envelope --------------------------------------------------------

    def _history(
        self, path: str, params: Mapping[str, str], start: datetime, end: datetime,
        interval: str, fields: Mapping[str, str],
    ) -> pl.DataFrame:  # fmt: skip
        """``ts`` and the ``fields`` columns of the closed bars with ``ts`` in (start, end]."""
        step = INTERVAL_MS.get(interval)
        if step is None:
            raise ValueError(f"interval {interval!r} not supported; use one of {list(INTERVAL_MS)}")
        params = {**params, "interval": interval}
        if self.api_key is None:
            raise CoinGlassKeyMissing(
                VENDOR, path, self.http.shown_params(params), message="no API key configured",
                hint="set COINGLASS_API_KEY (sent as the CG-API-KEY header; CoinGlass has no "
                "free tier and 15m history needs the Standard plan or above)",
            )  # fmt: skip
        now = self.now_ms()
        # ts = open + step in (start, end] and ts <= now  <=>  open in [first, last]
        first = to_ms(start) // step * step
        last = (min(to_ms(end), now) - step) // step * step
        shown = self.http.shown_params(params)
        refused = self.history.refusal(VENDOR, path, shown, first, now, step)
        if refused is not None and first <= last:
            raise refused
        frames: list[pl.DataFrame] = []
        empty_retry = True
        cursor = first
        while cursor <= last:
            # end_time one ms before the next window: right whether CoinGlass treats it as
            # inclusive or exclusive.
            window_end = min(cursor + PAGE_LIMIT * step, last + step) - 1
            page = {**params, "limit": PAGE_LIMIT, "start_time": cursor, "end_time": window_end}
            rows = self._data(path, page)
            if not rows and empty_retry:
                # Closed bars should exist here; one empty page is more often a hiccup than
                # missing history, and asking once more costs one request.
                empty_retry = False
                log.warning("%s %s: empty page; asking once more", VENDOR,
                            self.http.describe(path, page))  # fmt: skip
                continue
            try:
                frame = parse_rows(rows, path, fields)
            except VendorResponseError as exc:  # say which request brought the bad rows
                shown = self.http.shown_params(page)
                raise VendorResponseError(
                    VENDOR, path, shown, status=200, message=exc.message
                ) from None
            newest = frame["time_ms"].max()
            if newest is not None and int(newest) < cursor:  # type: ignore[arg-type]
                # The vendor ignored start_time and served an earlier page again: moving on
                # would file those rows under the wrong window and hide the real ones.
                raise VendorResponseError(
                    VENDOR, path, self.http.shown_params(page), status=200,
                    message=f"the page did not advance past start_time={cursor} (its newest "
                    f"row is time={newest}); refusing a page that repeats earlier history",
                )  # fmt: skip
            frames.append(frame)
            cursor = window_end + 1
        schema = {"time_ms": pl.Int64, **{col: pl.Float64 for col in fields.values()}}
        out = (
            pl.concat([pl.DataFrame(schema=schema), *frames])
            .unique(subset="time_ms", keep="first", maintain_order=True)
            .with_columns((pl.col("time_ms") + step).cast(TS).alias("ts"))
            .filter((pl.col("ts") > start) & (pl.col("ts") <= end) & (pl.col("ts") <= now))
            .sort("ts")
            .select("ts", *fields.values())
        )
        expected = max(0, (last - first) // step + 1)
        if out.height < expected:  # a gap is never silent
            log.warning(
                "%s %s %s %s (%s, %s]: %d of %d bars (%d missing)", VENDOR, path,
                params.get("symbol"), interval, start, end, out.height, expected,
                expected - out.height,
            )  # fmt: skip
        return out

    def _data(self, path: str, params: Mapping[str, Any]) -> list[Any]:
        """One page's ``data``. Error codes in the envelope (code 429/5xx retried) are
        handled by the HTTP session's one retry loop; what reaches here has code "0"."""
        body = self.http.get_json(path, params, expect=dict)
        data = body.get("data")
        if self.debug:
            first = data[0] if isinstance(data, list) and data else None
            log.info(
                "%s GET %s headers {%s} -> top-level keys %s; %s rows; first row keys %s",
                VENDOR, self.http.describe(path, params), self._shown_headers, sorted(body),
                len(data) if isinstance(data, list) else "no",
                sorted(first) if isinstance(first, dict) else None,
            )  # fmt: skip
        for key in ("code", "data"):
            if key not in body:
                raise VendorResponseError(
                    VENDOR, path, self.http.shown_params(params), "GET", 200, body.get("code"),
                    f"envelope lacks {key!r}; keys {sorted(body)}",
                )  # fmt: skip
        return [] if data is None else data


def _exchange_list(exchanges: str | Sequence[str]) -> str:
    names = exchanges.split(",") if isinstance(exchanges, str) else list(exchanges)
    joined = ",".join(n.strip() for n in names if n.strip())
    if not joined:
        raise ValueError("exchange_list is empty: name at least one exchange, e.g. 'Binance'")
    return joined


def _table(frame: pl.DataFrame, symbol: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return conform(frame.with_columns(pl.lit(symbol).alias("symbol")), schema)
