"""Binance kline routes of the sandbox: selection rules, row text, the forming candle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Literal

import numpy as np

from btc_assets.sandbox import market as mk
from btc_assets.sandbox.binance_common import (
    SPOT_BUCKET,
    WEIGHT_HEADER,
    BadRequest,
    error,
    instrument_param,
    limit_param,
    time_param,
    too_many,
)
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.routes import SandboxRequest, SandboxResponse, SandboxState
from btc_assets.sandbox.universe import Decimals

INTERVAL_MINUTES = {
    "1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30, "1h": 60, "2h": 120,
    "4h": 240, "6h": 360, "8h": 480, "12h": 720, "1d": 1440,
}  # fmt: skip
Market = Literal["spot", "perp"]
_SPOT_FORMATS = ('"%.8f","%.8f","%.8f","%.8f","%.8f"', '"%.8f",%d,"%.8f","%.8f","0"')


def _formats(market: Market, decimals: Decimals) -> tuple[str, str]:
    """Row text of the two decimal runs: spot prints 8 places everywhere; USD-M prints the
    contract's precision (at least 2 for prices: BTCUSDT's tick 0.1 prints "76936.20")."""
    if market == "spot":
        return _SPOT_FORMATS
    price_dp, size_dp, quote_dp = decimals
    p, v, q = f"%.{max(price_dp, 2)}f", f"%.{size_dp}f", f"%.{quote_dp}f"
    return f'"{p}","{p}","{p}","{p}","{v}"', f'"{q}",%d,"{v}","{q}","0"'


def _select(
    start: int | None,
    end: int | None,
    limit: int,
    step: int,
    first_ms: int,
    last_ms: int,
    holes: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Binance's rule on open times in [first_ms, last_ms], skipping missing bars (holes)."""
    lo = -(-max(start or 0, first_ms) // step) * step  # first aligned open at or after
    hi = min(last_ms, (end // step) * step) if end is not None else last_ms
    if hi < lo:
        return np.empty(0, dtype=np.int64)
    span = limit + sum((b - a) // step + 1 for a, b in holes)
    if start is not None:
        opens = lo + np.arange(min(span, (hi - lo) // step + 1), dtype=np.int64) * step
    else:
        count = min(span, (hi - lo) // step + 1)
        opens = hi - np.arange(count - 1, -1, -1, dtype=np.int64) * step
    for a, b in holes:
        opens = opens[(opens < a) | (opens >= b)]
    return opens[:limit] if start is not None else opens[-limit:]


def _decimals(symbol: str, market: Market) -> Decimals:
    return mk.instrument(symbol).decimals(market == "spot")


@lru_cache(maxsize=16)  # a backfill walks forward: only the last days are re-read
def _day_bars(seed: int, symbol: str, day: date, market: Market, minutes: int) -> mk.Bars:
    """``symbol`` is the instrument's perp symbol (the market's key) for both markets."""
    md = mk.market_day(seed, symbol, day)
    bars = md.spot if market == "spot" else md.perp
    return bars.aggregate(minutes, _decimals(symbol, market))


@lru_cache(maxsize=16)  # a backfill walks forward: only the last days are re-read
def _day_text(
    seed: int, symbol: str, day: date, market: Market, minutes: int
) -> tuple[list[str], list[str]]:
    """The two decimal runs of each row, formatted once per day (the costly part).

    One ``%`` over the whole day rather than one per row: the same C formatting, without
    a Python call per bar (a day of 1m bars in ~3 ms instead of ~18)."""
    b = _day_bars(seed, symbol, day, market, minutes)
    fmt_a, fmt_b = _formats(market, _decimals(symbol, market))
    head = _format_rows(fmt_a, (b.open, b.high, b.low, b.close, b.volume))
    tail = _format_rows(
        fmt_b, (b.quote_volume, b.trades, b.taker_buy_volume, b.taker_buy_quote_volume)
    )
    return head, tail


def _format_rows(fmt: str, columns: tuple[np.ndarray, ...]) -> list[str]:
    """``fmt % row`` for each row of ``columns`` (``%d`` takes whole floats too: trade counts
    are far below 2**53)."""
    if not len(columns[0]):
        return []
    values = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns]).ravel()
    return ("\n".join([fmt] * len(columns[0])) % tuple(values.tolist())).split("\n")


def _swap_high_low(decimals: str) -> str:
    open_, high, low, rest = decimals.split(",", 3)
    return ",".join((open_, low, high, rest))


def _forming(
    seed: int, symbol: str, market: Market, open_ms: int, minutes: int, now: int
) -> tuple[str, str]:
    """The still-open candle as of ``now``: the minutes so far, the last one pro rata."""
    day = mk.day_of_ms(open_ms)
    ones = _day_bars(seed, symbol, day, market, 1)
    first = (open_ms - mk.EPOCH_MS - mk.day_index(day) * mk.DAY_MS) // mk.MINUTE_MS
    last = first + (now - open_ms) // mk.MINUTE_MS
    part = ((now - open_ms) % mk.MINUTE_MS) / mk.MINUTE_MS
    sl = slice(first, last + 1)
    decimals = _decimals(symbol, market)
    price_dp, size_dp, quote_dp = decimals
    weights = np.ones(last - first + 1)
    weights[-1] = part

    def total(a: np.ndarray, dp: int) -> float:
        return round(float(np.dot(a[sl], weights)), dp)

    o_last, c_last = float(ones.open[last]), float(ones.close[last])
    close = round(o_last + (c_last - o_last) * part, price_dp)
    values_a = (
        float(ones.open[first]),
        float(ones.high[sl].max()),
        float(ones.low[sl].min()),
        close,
        total(ones.volume, size_dp),
    )
    values_b = (
        total(ones.quote_volume, quote_dp),
        round(float(np.dot(ones.trades[sl], weights))),
        total(ones.taker_buy_volume, size_dp),
        total(ones.taker_buy_quote_volume, quote_dp),
    )
    fmt_a, fmt_b = _formats(market, decimals)
    return fmt_a % values_a, fmt_b % values_b


@dataclass(frozen=True)
class KlineRoute:
    market: Market
    bucket: str
    max_limit: int
    symbol_param: str = "symbol"
    continuous: bool = False

    def weight(self, limit: int) -> int:
        if self.bucket == SPOT_BUCKET:
            return 2
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10

    def handle(
        self, req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
    ) -> SandboxResponse:
        params = req.params
        try:
            limit_for_weight = limit_param(params, 500, self.max_limit)
        except BadRequest:
            limit_for_weight = 500
        used, retry_after = state.charge(self.bucket, self.weight(limit_for_weight), 60)
        if retry_after is not None:
            return too_many(state, self.bucket, retry_after)
        headers = {WEIGHT_HEADER: str(used)}
        try:
            return self._answer(params, state, faults, headers)
        except BadRequest as exc:
            return error(exc.status, exc.code, exc.msg, headers)

    def _answer(
        self,
        params: Mapping[str, str],
        state: SandboxState,
        faults: Sequence[Fault],
        headers: dict[str, str],
    ) -> SandboxResponse:
        spot = self.market == "spot"
        # The market is keyed by the perp symbol: spot PEPEUSDT is 1000PEPEUSDT's spot side.
        inst = instrument_param(params, self.symbol_param, state, spot)
        symbol = inst.perp
        if self.continuous:
            contract = params.get("contractType", "")
            if not contract:
                raise BadRequest(
                    -1102,
                    "Mandatory parameter 'contractType' was not sent, "
                    "was empty/null, or malformed.",
                )
            if contract != "PERPETUAL" or not inst.is_perpetual:  # pair=<a perp> only
                raise BadRequest(-1130, "Data sent for parameter 'contractType' is not valid.")
        interval = params.get("interval", "")
        if not interval:
            raise BadRequest(
                -1102, "Mandatory parameter 'interval' was not sent, was empty/null, or malformed."
            )
        minutes = INTERVAL_MINUTES.get(interval)
        if minutes is None:
            raise BadRequest(-1120, "Invalid interval.")
        start, end = time_param(params, "startTime", spot), time_param(params, "endTime", spot)
        limit = limit_param(params, 500, self.max_limit)
        if start is not None and end is not None and start > end:
            raise BadRequest(-1023, "Start time is greater than end time.")
        now = state.now_ms()
        step = minutes * mk.MINUTE_MS
        # Nothing before the listing, nothing opening at or after a delisting or delivery.
        last_ms = now // step * step
        end_of_trading = inst.end_ms(spot)
        if end_of_trading is not None:
            last_ms = min(last_ms, (end_of_trading - 1) // step * step)
        holes = [f.gap_range_ms() for f in faults if f.kind == "gap"]
        opens = _select(start, end, limit, step, inst.listed_ms(spot), last_ms, holes)
        broken = [f.gap_range_ms() for f in faults if f.kind == "bad_ohlc"]
        kinds = {f.kind for f in faults}
        unit = 1000 if "microseconds" in kinds else 1
        extra = ',"0.00000000"' if "extra_field" in kinds else ""
        rows: list[str] = []
        days = (opens - mk.EPOCH_MS) // mk.DAY_MS
        for d in np.unique(days):
            day = mk.EPOCH + timedelta(days=int(d))
            head, tail = _day_text(state.seed, symbol, day, self.market, minutes)
            day_start = mk.EPOCH_MS + int(d) * mk.DAY_MS
            for ot in opens[days == d].tolist():
                ct = ot + step - 1
                if ct >= now:
                    a, b = _forming(state.seed, symbol, self.market, ot, minutes, now)
                else:
                    pos = (ot - day_start) // step
                    a, b = head[pos], tail[pos]
                    if any(lo <= ot < hi for lo, hi in broken):
                        a = _swap_high_low(a)
                rows.append(f"[{ot * unit},{a},{ct * unit},{b}{extra}]")
        body = ("[" + ",".join(apply_row_faults(rows, faults)) + "]").encode()
        return SandboxResponse.raw(200, body, headers)


def kline_row(seed: int, symbol: str, market: Market, open_ms: int, now_ms: int) -> str:
    """One 1m candle as the REST array's text, closed or (``now_ms`` before its close)
    forming: the very row ``/klines`` serves, for the websocket to send."""
    close_ms = open_ms + mk.MINUTE_MS - 1
    if close_ms >= now_ms:
        a, b = _forming(seed, symbol, market, open_ms, 1, max(now_ms, open_ms + 1))
    else:
        day = mk.day_of_ms(open_ms)
        head, tail = _day_text(seed, symbol, day, market, 1)
        pos = (open_ms - mk.EPOCH_MS - mk.day_index(day) * mk.DAY_MS) // mk.MINUTE_MS
        a, b = head[pos], tail[pos]
    return f"[{open_ms},{a},{close_ms},{b}]"
