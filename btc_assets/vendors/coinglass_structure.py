"""CoinGlass market structure: liquidation heatmaps (model1) and Hyperliquid whales.

Methods of :class:`CoinGlassStructureMixin`, which ``CoinGlassClient`` inherits, so they share
its key, session, per-minute budget, envelope handling and error refinement:

- ``liquidation_heatmap``: ``liquidation/heatmap/model1`` (pair) or
  ``liquidation/aggregated-heatmap/model1`` (coin), Professional plan and up. The answer
  has no dates, only a ``range`` ending now: ``y_axis`` (price levels, ascending),
  ``price_candlesticks`` (``[open_time, o, h, l, c, volume_usd]``, open time in seconds per
  the doc; ms is detected and converted) and ``liquidation_leverage_data``
  (``[x_index, y_index, value]``: candle x, level y). It becomes two contract frames
  labelled by candle close (``ts = open + interval``), closed candles only.
- ``whale_positions`` / ``whale_alerts``: ``/api/hyperliquid/whale-position`` and
  ``whale-alert`` (Startup and up) as typed frames; exact duplicate rows collapse.

Heatmap answers are validated and shaped in ``coinglass_heatmap_parse`` (an ambiguous
answer is refused whole, :class:`CoinGlassHeatmapError`); whale rows here
(:class:`CoinGlassWhaleError` names the row and field). Times in seconds instead of ms are
detected and converted in both. An empty answer is asked once more, as the history pager
does; a plan refusal (:class:`CoinGlassPlanError`) says which plan the endpoint needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import polars as pl

from btc_assets.core.schema import TS
from btc_assets.vendors.coinglass_heatmap_parse import (
    CoinGlassHeatmapError as CoinGlassHeatmapError,
)
from btc_assets.vendors.coinglass_heatmap_parse import (
    HeatmapAnswer,
    epoch_ms_of,
    finite,
    parse_heatmap,
    shown,
    typed,
)
from btc_assets.vendors.errors import VendorResponseError

if TYPE_CHECKING:
    from btc_assets.vendors.http import VendorHttpClient

log = logging.getLogger("btc_assets.vendors")

VENDOR = "coinglass"
PAIR_HEATMAP = "/api/futures/liquidation/heatmap/model1"
COIN_HEATMAP = "/api/futures/liquidation/aggregated-heatmap/model1"
WHALE_ALERT = "/api/hyperliquid/whale-alert"
WHALE_POSITION = "/api/hyperliquid/whale-position"
Scope = Literal["pair", "coin"]
# The ranges CoinGlass serves, shortest first; each window is (now - range, now].
HEATMAP_RANGES: dict[str, timedelta] = {
    "12h": timedelta(hours=12),
    "24h": timedelta(hours=24),
    "3d": timedelta(days=3),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
    "180d": timedelta(days=180),
    "1y": timedelta(days=365),
}
PLAN_HINTS = {
    PAIR_HEATMAP: "liquidation heatmaps need the Professional plan or above",
    COIN_HEATMAP: "liquidation heatmaps need the Professional plan or above",
    WHALE_ALERT: "Hyperliquid whale endpoints need the Startup plan or above",
    WHALE_POSITION: "Hyperliquid whale endpoints need the Startup plan or above",
}
WHALE_EVENT_SCHEMA: dict[str, pl.DataType] = {
    "coin": pl.String(),
    "user": pl.String(),
    "side": pl.String(),
    "action": pl.String(),
    "position_size": pl.Float64(),
    "entry_price": pl.Float64(),
    "liq_price": pl.Float64(),
    "position_value_usd": pl.Float64(),
    "create_time": TS,
}
WHALE_POSITION_SCHEMA: dict[str, pl.DataType] = {
    "coin": pl.String(),
    "user": pl.String(),
    "side": pl.String(),
    "position_size": pl.Float64(),
    "entry_price": pl.Float64(),
    "mark_price": pl.Float64(),
    "liq_price": pl.Float64(),
    "leverage": pl.Float64(),
    "margin_mode": pl.String(),
    "margin_balance": pl.Float64(),
    "position_value_usd": pl.Float64(),
    "unrealized_pnl": pl.Float64(),
    "funding_fee": pl.Float64(),
    "create_time": TS,
    "update_time": TS,
}
# JSON key -> column, for the numbers each answer may carry (null allowed).
_EVENT_NUMBERS = {"entry_price": "entry_price", "liq_price": "liq_price"}
_POSITION_NUMBERS = {
    k: k
    for k in (
        "entry_price",
        "mark_price",
        "liq_price",
        "leverage",
        "margin_balance",
        "unrealized_pnl",
        "funding_fee",
    )
}
_ACTIONS = {1: "open", 2: "close"}


class CoinGlassWhaleError(VendorResponseError):
    """A Hyperliquid whale row lacking a required field or holding an unusable value."""


def heatmap_range_for(start: datetime, now: datetime) -> str | None:
    """The shortest range whose window ``(now - range, now]`` holds every bar after
    ``start`` (i.e. ``now - range <= start``); None when ``start`` is older than 1y."""
    return next((name for name, span in HEATMAP_RANGES.items() if now - span <= start), None)


def parse_whales(
    rows: Any,
    kind: Literal["positions", "events"],
    endpoint: str,
    params: Mapping[str, str] | None = None,
) -> pl.DataFrame:
    """Whale rows as WHALE_POSITION_SCHEMA / WHALE_EVENT_SCHEMA frames, exact duplicates
    collapsed; a row lacking a required field raises :class:`CoinGlassWhaleError`."""

    def bad(message: str) -> CoinGlassWhaleError:
        return CoinGlassWhaleError(
            VENDOR,
            endpoint,
            dict(params or {}),
            status=200,
            message=f"Hyperliquid whale {kind}: {message}",
        )

    if not isinstance(rows, list):
        raise bad(f"'data' is a {type(rows).__name__}, expected a list of rows")
    positions = kind == "positions"
    required = (
        "user",
        "symbol",
        "position_size",
        "position_value_usd",
        "create_time",
        *(("update_time",) if positions else ("position_action",)),
    )
    numbers = _POSITION_NUMBERS if positions else _EVENT_NUMBERS
    out: dict[str, list[Any]] = {
        c: [] for c in (WHALE_POSITION_SCHEMA if positions else WHALE_EVENT_SCHEMA)
    }
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise bad(f"row {i} is not an object: {shown(row)}")
        missing = [k for k in required if row.get(k) is None or row.get(k) == ""]
        if missing:
            raise bad(
                f"row {i} lacks required field {missing[0]!r} (user "
                f"{row.get('user')!r}, symbol {row.get('symbol')!r})"
            )

        def number(key: str, row: dict[str, Any] = row, i: int = i) -> float | None:
            value = row.get(key)
            if value is None or value == "":
                return None
            if not finite(value):
                raise bad(f"row {i} field {key!r} is not a finite number: {value!r}")
            return float(value)

        size = number("position_size")
        if not size:
            raise bad(f"row {i} position_size {row['position_size']!r} has no side")
        out["coin"].append(str(row["symbol"]))
        out["user"].append(str(row["user"]))
        out["side"].append("short" if size < 0 else "long")
        out["position_size"].append(abs(size))
        out["position_value_usd"].append(number("position_value_usd"))
        for key, col in numbers.items():
            out[col].append(number(key))
        for key in ("create_time", "update_time") if positions else ("create_time",):
            t = number(key)
            if t is None or t != int(t) or t <= 0:
                raise bad(f"row {i} field {key!r} is not a whole epoch time: {row[key]!r}")
            out[key].append(int(epoch_ms_of(np.array([int(t)]))[0]))
        if positions:
            mode = row.get("margin_mode")
            out["margin_mode"].append(None if mode is None else str(mode))
        else:
            action = number("position_action")
            if action not in _ACTIONS:
                raise bad(
                    f"row {i} position_action {row['position_action']!r}: expected 1 "
                    "(open) or 2 (close)"
                )
            out["action"].append(_ACTIONS[int(action)])
    schema = WHALE_POSITION_SCHEMA if positions else WHALE_EVENT_SCHEMA
    frame = pl.DataFrame(out, schema={c: pl.Int64 if t == TS else t for c, t in schema.items()})
    order = ["coin", "user", "side"] if positions else ["create_time", "coin", "user", "action"]
    return typed(frame, schema).unique(maintain_order=True).sort(order, maintain_order=True)


class CoinGlassStructureMixin:
    """The heatmap and whale requests of ``CoinGlassClient`` (which provides these names)."""

    http: VendorHttpClient
    api_key: str | None
    now_ms: Callable[[], int]

    if TYPE_CHECKING:

        def _data(self, path: str, params: Mapping[str, Any]) -> Any: ...

    def liquidation_heatmap(
        self,
        symbol: str,
        *,
        scope: Scope,
        range_: str,
        exchange: str = "Binance",
        pair: str | None = None,
        coin: str | None = None,
    ) -> HeatmapAnswer:
        """The model1 heatmap of ``symbol`` (the project symbol, stored in ``symbol``):
        ``scope="pair"`` asks ``pair or symbol`` on ``exchange``, ``"coin"`` asks ``coin``
        (default: ``symbol`` without its USDT quote) over CoinGlass's exchanges."""
        if range_ not in HEATMAP_RANGES:
            raise ValueError(f"range_ {range_!r}: expected one of {list(HEATMAP_RANGES)}")
        if scope == "pair":
            path, params = PAIR_HEATMAP, {"exchange": exchange, "symbol": pair or symbol}
        elif scope == "coin":
            path, params = COIN_HEATMAP, {"symbol": coin or symbol.removesuffix("USDT")}
        else:
            raise ValueError(f"scope {scope!r}: expected 'pair' or 'coin'")
        params["range"] = range_
        data = self._structure_data(path, params, _empty_heatmap)
        return parse_heatmap(
            data,
            symbol=symbol,
            scope=scope,
            range_=range_,
            now_ms=self.now_ms(),
            endpoint=path,
            params=self.http.shown_params(params),
        )

    def whale_positions(self) -> pl.DataFrame:
        """Hyperliquid positions above $1M now (WHALE_POSITION_SCHEMA)."""
        rows = self._structure_data(WHALE_POSITION, {}, _empty_rows)
        return parse_whales(rows, "positions", WHALE_POSITION)

    def whale_alerts(self) -> pl.DataFrame:
        """The latest Hyperliquid opens/closes above $1M (WHALE_EVENT_SCHEMA)."""
        rows = self._structure_data(WHALE_ALERT, {}, _empty_rows)
        return parse_whales(rows, "events", WHALE_ALERT)

    def _structure_data(
        self, path: str, params: Mapping[str, str], empty: Callable[[Any], bool]
    ) -> Any:
        """``data`` of one answer; an empty one is asked once more (more often a hiccup
        than the truth), and a plan refusal says which plan the endpoint needs."""
        # Imported here: coinglass.py imports this module to build its client class.
        from btc_assets.vendors.coinglass import CoinGlassKeyMissing, CoinGlassPlanError

        if self.api_key is None:
            raise CoinGlassKeyMissing(
                VENDOR,
                path,
                self.http.shown_params(params),
                message="no API key configured",
                hint=f"set COINGLASS_API_KEY (sent as the CG-API-KEY header); {PLAN_HINTS[path]}",
            )
        try:
            data = self._data(path, params)
            if empty(data):
                log.warning(
                    "%s %s: empty answer; asking once more",
                    VENDOR,
                    self.http.describe(path, params),
                )
                data = self._data(path, params)
        except CoinGlassPlanError as err:
            raise err.evolve(
                CoinGlassPlanError, f"{PLAN_HINTS[path]}; this key's plan does not include it"
            ) from None
        return data


def _empty_heatmap(data: Any) -> bool:
    return not data or (isinstance(data, dict) and not any(data.values()))


def _empty_rows(data: Any) -> bool:
    return isinstance(data, list) and not data
