"""CoinGlass v4 history (price, OI, funding, taker volume, liquidations) as contract frames.

A plain client (no Dagster). Every method takes the project symbol first (``BTCUSDT``: the
table's ``symbol`` column, and the pair of pair endpoints unless ``pair=`` differs); coin
endpoints also take the coin (``BTC``). Rows are labelled by close time, ``ts = time +
interval``, kept when ``ts`` is in ``(start, end]`` and the bar has closed (``ts <= now``).
Which end of a window CoinGlass serves past ``limit`` rows is unconfirmed, so each request
asks for at most ``limit=1000`` bars: 365 days at 15m = ceil(35040 / 1000) = 36 requests.

Errors mostly come as HTTP 200 with a non-"0" string ``code``: "401 Upgrade plan" raises
:class:`CoinGlassPlanError`, a rejected key :class:`CoinGlassKeyInvalid`, code 429/5xx is
retried like that HTTP status, anything else is a :class:`VendorError` with the vendor's
message. No key at all raises :class:`CoinGlassKeyMissing` before any request.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
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
from btc_assets.vendors.ratelimit import WeightBudget

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
_SECONDS, _MICROS = 100_000_000_000, 100_000_000_000_000  # ms lies between (1973..5138)


class CoinGlassKeyMissing(VendorError, VendorConfigError):
    """No API key configured: raised before any request is sent."""


class CoinGlassKeyInvalid(VendorError):
    """CoinGlass rejected the key (unknown, revoked, or not seen in ``CG-API-KEY``)."""


class CoinGlassPlanError(VendorRefused):
    """The key's plan does not cover this endpoint or interval ("Upgrade plan")."""


def _bad(endpoint: str, message: str) -> VendorResponseError:
    return VendorResponseError(VENDOR, endpoint, None, status=200, message=message)


def _number(value: Any, endpoint: str, key: str, row: int) -> float | None:
    """A JSON number or numeric string (CoinGlass serves both); ``null``/``""`` → null."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = math.nan
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):  # "abc" stays NaN: refused below
            number = float(value)
    if not math.isfinite(number):
        raise _bad(endpoint, f"row {row} field {key!r} is not a number: {value!r}")
    return number


def _time_ms(value: Any, endpoint: str, row: int) -> int:
    """``time`` in ms; seconds or µs (both seen on other CoinGlass endpoints) are converted."""
    number = _number(value, endpoint, "time", row)
    if number is None or number != int(number):
        raise _bad(endpoint, f"row {row} field 'time' is not a whole timestamp: {value!r}")
    ms = int(number)
    return ms * 1000 if ms < _SECONDS else ms // 1000 if ms > _MICROS else ms


def parse_rows(rows: Any, endpoint: str, fields: Mapping[str, str]) -> pl.DataFrame:
    """CoinGlass history rows → ``time_ms`` (Int64) and ``fields`` (JSON key → column, Float64).

    Extra keys are ignored (schema drift that adds fields); a missing ``time`` or field
    raises :class:`VendorResponseError` naming the endpoint, the row and the key.
    """
    if not isinstance(rows, list):
        raise _bad(endpoint, f"'data' is a {type(rows).__name__}, expected a list of rows")
    times: list[int] = []
    columns: dict[str, list[float | None]] = {col: [] for col in fields.values()}
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _bad(endpoint, f"row {i} is not an object: {str(row)[:100]}")
        missing = [k for k in ("time", *fields) if k not in row]
        if missing:
            raise _bad(endpoint, f"row {i} lacks required key(s) {missing}; has {sorted(row)}")
        times.append(_time_ms(row["time"], endpoint, i))
        for key, col in fields.items():
            columns[col].append(_number(row[key], endpoint, key, i))
    schema = {"time_ms": pl.Int64, **{col: pl.Float64 for col in columns}}
    return pl.DataFrame({"time_ms": times, **columns}, schema=schema)


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

    def exhaust(self) -> None:
        """After a rate-limit answer: spend this window, so the next request waits it out."""
        with self._lock:
            self._roll()
            self.used = max(self.used, math.ceil(self.limit * self.safety))


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
    return err


class CoinGlassClient(SessionClient):
    """CoinGlass v4 (``open-api-v4.coinglass.com``) history endpoints.

    ``requests_per_minute`` is the plan's limit (Hobbyist 30, Startup 80, Standard 300,
    Professional 1200); the client stays under 90 % of it. ``debug`` logs (INFO) each
    request's parameters and the answer's top-level and first-row keys, never the key.
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
        max_retry_after: float = 120.0,
        debug: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        now_ms: Callable[[], int] = epoch_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.api_key = (api_key or "").strip() or None
        self.max_retries, self.backoff_base = max_retries, backoff_base
        self.backoff_cap = backoff_cap
        self.debug, self.sleep, self.now_ms = debug, sleep, now_ms
        self._rng = rng or random.Random()
        headers = {"accept": "application/json"}
        if self.api_key:
            headers[KEY_HEADER] = self.api_key
        self._shown_headers = ", ".join(
            f"{k}={MASK if k == KEY_HEADER else v}" for k, v in headers.items()
        )
        self.budget = _PlanBudget(
            requests_per_minute, 60, header=USE_HEADER, clock=clock, sleep=sleep,
            name="coinglass requests/min",
        )  # fmt: skip
        self.http = VendorHttpClient(
            VENDOR, base_url, transport=transport, timeout=timeout, max_retries=max_retries,
            backoff_base=backoff_base, backoff_cap=backoff_cap, max_retry_after=max_retry_after,
            headers=headers, limiter=self.budget, sleep=sleep,
            base_url_setting="COINGLASS_BASE_URL", error_hook=_refine, rng=self._rng,
        )  # fmt: skip

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
                frames.append(parse_rows(rows, path, fields))
            except VendorResponseError as exc:  # say which request brought the bad rows
                shown = self.http.shown_params(page)
                raise VendorResponseError(
                    VENDOR, path, shown, status=200, message=exc.message
                ) from None
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
        """One page's ``data``, retrying code 429/5xx answered inside an HTTP 200."""
        failures = 0
        while True:
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
            if "code" not in body:
                raise self._error(VendorResponseError, path, params, None,
                                  f"envelope lacks 'code'; keys {sorted(body)}")  # fmt: skip
            code = str(body["code"]).strip()
            if code == "0":
                if "data" not in body:
                    raise self._error(VendorResponseError, path, params, code,
                                      f"envelope lacks 'data'; keys {sorted(body)}")  # fmt: skip
                return [] if data is None else data
            message = str(body.get("msg") or body.get("message") or "no message")
            cls = RETRY_CODES.get(code)
            if cls is None or failures >= self.max_retries:
                hint = f"gave up after {failures + 1} attempts" if cls else ""
                raise self._error(cls or VendorError, path, params, code, message, hint)
            failures += 1
            if code == "429":
                self.budget.exhaust()  # the next attempt waits for a fresh window
            ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (failures - 1))
            delay = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
            log.warning("%s GET %s answered code %s (%s) in HTTP 200; retry %d in %.2f s",
                        VENDOR, self.http.describe(path, params), code,
                        self.http.redact(message), failures, delay)  # fmt: skip
            self.sleep(delay)

    def _error(
        self, cls: type[VendorError], path: str, params: Mapping[str, Any], code: str | None,
        message: str, hint: str = "",
    ) -> VendorError:  # fmt: skip
        shown = self.http.shown_params(params)
        err = cls(VENDOR, path, shown, "GET", 200, code, self.http.redact(message), hint)
        return _refine(err)


def _exchange_list(exchanges: str | Sequence[str]) -> str:
    names = exchanges.split(",") if isinstance(exchanges, str) else list(exchanges)
    joined = ",".join(n.strip() for n in names if n.strip())
    if not joined:
        raise ValueError("exchange_list is empty: name at least one exchange, e.g. 'Binance'")
    return joined


def _table(frame: pl.DataFrame, symbol: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return conform(frame.with_columns(pl.lit(symbol).alias("symbol")), schema)
