"""CoinGlass liquidation heatmap model1 routes of the sandbox (pair and coin scope).

``/api/futures/liquidation/heatmap/model1?exchange=Binance&symbol=BTCUSDT&range=3d`` and
``/api/futures/liquidation/aggregated-heatmap/model1?symbol=BTC&range=3d`` (Professional
plan: other keys get CoinGlass's 200 ``{"code":"401","msg":"Upgrade plan"}``) answer
``{"y_axis": [...], "liquidation_leverage_data": [[x, y, usd], ...],
"price_candlesticks": [[open_seconds, "o", "h", "l", "c", "volume_usd"], ...]}``.

Candles: the last N of the range's interval (12h and 24h: 5m, 3d: 15m, 7d: 30m, 30d: 2h,
90d: 6h, 180d: 12h, 1y: 1d) up to and including the forming one, aggregated from the same
minutes the price history serves (``coinglass_market``), so a heatmap candle equals the
history bar of the same interval.

Intensity, a plain model of where leveraged positions would be liquidated: each candle's
rise in open interest opens positions at its low, close and high (weights 1:2:1), split
long/short by the candle's taker buy share and over leverages 5/10/25/50/100x; a long at
``p`` is liquidated at ``p(1 - 1/L)``, a short at ``p(1 + 1/L)``. A fall in open interest
closes positions pro rata, open positions decay with a 5-day half-life (closed by their
owners), and a level is cleared once a candle trades through it. Cell (x, y) is what stands
at level y after candle x; only non-zero cells are sent. The model warms up over up to a
quarter of the window (7 days at most) before it, so the left edge is not empty. ``y_axis``:
200 levels on the tick, evenly spaced over the window's range plus a quarter of it and 2 %
of the price on each side. Coin scope is all of CoinGlass's exchanges' open interest with
the Binance perp's candles (volume over all exchanges); pair scope the exchange's share.

Data faults: ``empty``, ``duplicates`` / ``out_of_order`` (on the cells), ``extra_field``,
``bad_index`` (the first cell's x_index = the candle count), ``candle_ms`` and
``microseconds`` (candle open times in ms / µs instead of seconds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date
from functools import lru_cache

import numpy as np

from btc_assets.sandbox import coinglass as cg
from btc_assets.sandbox import coinglass_market as cgm
from btc_assets.sandbox import market as mk
from btc_assets.sandbox import routes
from btc_assets.sandbox.faults import Fault, apply_row_faults
from btc_assets.sandbox.routes import Route, SandboxRequest, SandboxResponse, SandboxState

PAIR_PATH = "/api/futures/liquidation/heatmap/model1"
COIN_PATH = "/api/futures/liquidation/aggregated-heatmap/model1"
TIER = "professional"
# range -> (candle minutes, candle count)
RANGES: dict[str, tuple[int, int]] = {
    "12h": (5, 144),
    "24h": (5, 288),
    "3d": (15, 288),
    "7d": (30, 336),
    "30d": (120, 360),
    "90d": (360, 360),
    "180d": (720, 360),
    "1y": (1440, 365),
}
Y_LEVELS = 200
LEVERAGES = np.array([5.0, 10.0, 25.0, 50.0, 100.0])
LEVERAGE_WEIGHTS = np.array([0.2, 0.3, 0.25, 0.15, 0.1])
ENTRY_WEIGHTS = np.array([0.25, 0.5, 0.25])  # at the candle's low, close, high
HALF_LIFE_MS = 5 * mk.DAY_MS
MAX_WARMUP_MS = 7 * mk.DAY_MS
_FIELDS = ("open", "high", "low", "close", "volume", "oi_start", "oi_end", "buy", "sell")
_TOTAL_FUTURES = sum(futures for _, futures in cgm.EXCHANGES.values())


def _minute_arrays(seed: int, symbol: str, day: date, exchange: str | None) -> list[np.ndarray]:
    """The day's 1m fields (``_FIELDS`` order): the exchange's pair, or (None) the coin."""
    cols = cgm.minute_columns(seed, symbol, day, "price", (exchange or "Binance",))
    day_data = cgm.coinglass_day(seed, symbol, day)
    volume = cols["volume_usd"][0] * (_TOTAL_FUTURES if exchange is None else 1.0)
    oi = day_data.oi_usd_path
    return [
        cols["open"][0],
        cols["high"][0],
        cols["low"][0],
        cols["close"][0],
        volume,
        oi[:-1],
        oi[1:],
        day_data.perp_buy,
        day_data.perp_sell,
    ]


def _aggregate(arrays: list[np.ndarray], minutes: int, count: int) -> np.ndarray:
    """The first ``count`` minutes as candles of ``minutes`` (the last one may be partial):
    a (len(_FIELDS), candles) array."""
    starts = np.arange(0, count, minutes)
    ends = np.minimum(starts + minutes, count) - 1
    o, h, lo, c, vol, oi0, oi1, buy, sell = (a[:count] for a in arrays)
    return np.vstack(
        [
            o[starts],
            np.maximum.reduceat(h, starts),
            np.minimum.reduceat(lo, starts),
            c[ends],
            np.add.reduceat(vol, starts),
            oi0[starts],
            oi1[ends],
            np.add.reduceat(buy, starts),
            np.add.reduceat(sell, starts),
        ]
    )


@lru_cache(maxsize=2048)  # small (<= 288 candles): a 1y window reads each day once
def _closed_day(
    seed: int, symbol: str, day: date, exchange: str | None, minutes: int
) -> np.ndarray:
    out = _aggregate(_minute_arrays(seed, symbol, day, exchange), minutes, mk.MINUTES)
    out.flags.writeable = False
    return out


def _candles(
    seed: int, symbol: str, exchange: str | None, minutes: int, first: int, last: int, now: int
) -> np.ndarray:
    """Candles opening first..last (ms, aligned); the forming one from the minutes closed."""
    step = minutes * mk.MINUTE_MS
    parts = []
    for index in range(mk.day_index(mk.day_of_ms(first)), mk.day_index(mk.day_of_ms(last)) + 1):
        day_start = mk.EPOCH_MS + index * mk.DAY_MS
        day = mk.day_of_ms(day_start)
        if day_start + mk.DAY_MS <= now:
            block = _closed_day(seed, symbol, day, exchange, minutes)
        else:
            closed = (now - day_start) // mk.MINUTE_MS
            block = _aggregate(_minute_arrays(seed, symbol, day, exchange), minutes, closed)
        opens = day_start + np.arange(block.shape[1]) * step
        parts.append(block[:, (opens >= first) & (opens <= last)])
    return np.hstack(parts)


def _y_axis(low: float, high: float, price: float, tick_dp: int) -> np.ndarray:
    tick = 10.0**-tick_dp
    margin = 0.25 * (high - low) + 0.02 * price
    step = max(tick, round((high - low + 2 * margin) / (Y_LEVELS - 1) / tick) * tick)
    base = round((low - margin) / tick) * tick
    return np.round(base + np.arange(Y_LEVELS) * step, tick_dp)


def _intensity(candles: np.ndarray, levels: np.ndarray, step_ms: int, scale: float) -> np.ndarray:
    """(candles, levels) USD standing at each level after each candle (the module's model)."""
    _, h, lo, c, _, oi0, oi1, buy, sell = candles
    longs, shorts = np.zeros(len(levels)), np.zeros(len(levels))
    out = np.zeros((candles.shape[1], len(levels)))
    decay = 0.5 ** (step_ms / HALF_LIFE_MS)
    width = levels[1] - levels[0]
    for x in range(candles.shape[1]):
        a = np.searchsorted(levels, lo[x], side="left")
        b = np.searchsorted(levels, h[x], side="right")
        longs[a:b] = 0.0  # traded through: liquidated
        shorts[a:b] = 0.0
        kept = decay * min(1.0, oi1[x] / oi0[x])  # falling OI closes positions pro rata
        longs *= kept
        shorts *= kept
        opened = max(0.0, oi1[x] - oi0[x]) * scale
        if opened > 0:
            buy_share = buy[x] / max(buy[x] + sell[x], 1e-9)
            entries = np.array([lo[x], c[x], h[x]])
            amount = opened * np.outer(ENTRY_WEIGHTS, LEVERAGE_WEIGHTS)
            for book, sign, share in ((longs, -1.0, buy_share), (shorts, 1.0, 1 - buy_share)):
                prices = np.outer(entries, 1.0 + sign / LEVERAGES)
                idx = np.rint((prices - levels[0]) / width).astype(np.int64)
                inside = (idx >= 0) & (idx < len(levels))
                np.add.at(book, idx[inside], amount[inside] * share)
        out[x] = longs + shorts
    return out


@lru_cache(maxsize=32)  # per (seed, symbol, scope, range, now-minute): the benchmark's loop
def heatmap(
    seed: int,
    symbol: str,
    exchange: str | None,
    range_: str,
    now_minute: int,
    listed_ms: int,
    end_ms: int | None,
) -> tuple[list[float], np.ndarray, list[list[object]]]:
    """(y_axis, cells as an (n, 3) array of x, y, usd, candles [open_s, o, h, l, c, volume]
    with prices as strings). Cells stay an array: 50k Python lists per cached entry would
    cost megabytes."""
    minutes, count = RANGES[range_]
    step = minutes * mk.MINUTE_MS
    now = now_minute * mk.MINUTE_MS
    forming = now // step * step
    last = forming if now - forming >= mk.MINUTE_MS else forming - step
    if end_ms is not None:
        last = min(last, (end_ms - 1) // step * step)
    first = max(last - (count - 1) * step, -(-listed_ms // step) * step)
    warm = max(first - min(count // 4 * step, MAX_WARMUP_MS), -(-listed_ms // step) * step)
    if last < first:
        return [], np.empty((0, 3)), []
    candles = _candles(seed, symbol, exchange, minutes, warm, last, now)
    shown = candles[:, (first - warm) // step :]
    dp = mk.instrument(symbol).perp_decimals[0]
    levels = _y_axis(float(shown[2].min()), float(shown[1].max()), float(shown[3][-1]), dp)
    scale = 1.0 if exchange is None else cgm.EXCHANGES[exchange][1] / _TOTAL_FUTURES
    grid = np.round(_intensity(candles, levels, step, scale)[(first - warm) // step :], 2)
    xs, ys = np.nonzero(grid)
    cells = np.column_stack([xs, ys, grid[xs, ys]])
    cells.flags.writeable = False
    opens = (first + np.arange(shown.shape[1]) * step) // 1000
    rows: list[list[object]] = [
        [t, *(cg._price(v, dp) for v in ohlc), f"{vol:.4f}"]
        for t, *ohlc, vol in zip(opens.tolist(), *shown[:5].tolist(), strict=True)
    ]
    return levels.tolist(), cells, rows


def _cell_rows(cells: np.ndarray) -> list[list[float]]:
    """[[x, y, usd], ...] with whole-number indexes, as CoinGlass sends them."""
    xs, ys = cells[:, 0].astype(np.int64).tolist(), cells[:, 1].astype(np.int64).tolist()
    return [[x, y, v] for x, y, v in zip(xs, ys, cells[:, 2].tolist(), strict=True)]


@lru_cache(maxsize=16)  # about 1-2 MB of text each
def _clean_json(*key: object) -> str:
    """The unfaulted ``data`` as JSON, encoded once per heatmap (``heatmap``'s arguments)."""
    levels, cells, candles = heatmap(*key)  # type: ignore[arg-type]
    data = {
        "y_axis": levels,
        "liquidation_leverage_data": _cell_rows(cells),
        "price_candlesticks": candles,
    }
    return json.dumps(data, separators=(",", ":"))


def _answer(path: str, req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]) -> str:
    """The ``data`` object as JSON text (faults applied)."""
    params: Mapping[str, str] = req.params
    pair = path == PAIR_PATH
    for name in ("exchange", "symbol", "range") if pair else ("symbol", "range"):
        if not params.get(name):
            raise cg.BadRequest("400", f"Required String parameter '{name}' is not present")
    found = state.universe.perp(params["symbol"]) if pair else state.universe.coin(params["symbol"])
    if found is None:
        raise cg.BadRequest("400", f"Unsupported symbol: {params['symbol']}")
    exchange = params["exchange"] if pair else None
    if exchange is not None and exchange not in cgm.EXCHANGES:
        raise cg.BadRequest("400", f"Unsupported exchange: {exchange}")
    if params["range"] not in RANGES:
        raise cg.BadRequest("400", f"Invalid range: {params['range']}")
    key = (
        state.seed,
        found.perp,
        exchange,
        params["range"],
        state.now_ms() // mk.MINUTE_MS,
        found.perp_listed_ms,
        found.perp_end_ms,
    )
    if not faults:
        return _clean_json(*key)
    levels, cells, candles = heatmap(*key)
    kinds = {f.kind for f in faults}
    if "empty" in kinds:
        return '{"y_axis":[],"liquidation_leverage_data":[],"price_candlesticks":[]}'
    rows = apply_row_faults(_cell_rows(cells), faults)
    if "bad_index" in kinds and rows:
        rows[0] = [len(candles), *rows[0][1:]]
    unit = 1000 if "candle_ms" in kinds else 1_000_000 if "microseconds" in kinds else 1
    if unit != 1:
        candles = [[row[0] * unit, *row[1:]] for row in candles]  # type: ignore[operator]
    data: dict[str, object] = {
        "y_axis": levels,
        "liquidation_leverage_data": rows,
        "price_candlesticks": candles,
    }
    if "extra_field" in kinds:
        data["update_time"] = state.now_ms()
    return json.dumps(data, separators=(",", ":"))


def _handler(path: str) -> routes.Handler:
    def handle(
        req: SandboxRequest, state: SandboxState, faults: Sequence[Fault]
    ) -> SandboxResponse:
        headers, refusal = cg.gate(req, state, TIER)
        if refusal is not None:
            return refusal
        try:
            data = _answer(path, req, state, faults)
        except cg.BadRequest as exc:
            return SandboxResponse.json(200, {"code": exc.code, "msg": exc.msg}, headers)
        extra = ',"success":true' if any(f.kind == "extra_field" for f in faults) else ""
        body = '{"code":"0","msg":"success","data":' + data + extra + "}"
        return SandboxResponse.raw(200, body.encode(), headers)

    return handle


for _path in (PAIR_PATH, COIN_PATH):
    routes.register(
        Route("coinglass", _path, _handler(_path), cg.render_fault, symbol_param="symbol")
    )
