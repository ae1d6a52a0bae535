"""CoinGlass liquidation heatmaps (model1): the tiles and the price candles they came with.

The heatmap endpoints take no dates, only a ``range`` ending now (12h ... 1y), and the
longer the range the coarser its candles. A day is therefore asked with the shortest range
whose window reaches past the day's start with a fiftieth of the window to spare (at least
one candle at CoinGlass's few hundred candles per range), once per run for all the days that
need the same range. Days further back than a year cannot be asked at all: they are stored
empty with the reason, a warning, and blocked nothing. A closed day, once stored whole, is
reused like any raw day, so its resolution is the one it was first fetched at; the day's
provenance records the range and the candle interval.

Both scopes are asked: ``pair`` (the Binance perp pair) and ``coin`` (aggregated over
exchanges). A scope the plan refuses is left out of the day and named in its provenance
(``refused_scopes``); only when both are refused is the day unavailable.

Tiles and candles are two tables from the same answers. The candles are built first (a
gated input of the tiles) and the tile asset's materialization carries a picture of the
newest day that passes its gate, over its candles if theirs pass too.
"""

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import dagster as dg
import polars as pl

from btc_assets import clock
from btc_assets.assets.raw import FetchDays, Fetched, raw_asset, split_days
from btc_assets.charts.heatmap import heatmap_png
from btc_assets.core.market_schema import HEATMAP_SCOPES
from btc_assets.core.schema import day_bounds, partition_day_expr
from btc_assets.core.tables import HEATMAP_CANDLES, HEATMAP_TILES, Table
from btc_assets.defs.day_gate import unusable_days
from btc_assets.lake import Lake
from btc_assets.vendors.coinglass import COINGLASS_PAIR_HEATMAP, CoinGlassClient
from btc_assets.vendors.coinglass_structure import heatmap_range_for
from btc_assets.vendors.errors import VendorRefused

Part = Literal["tiles", "candles"]
# The share of the window kept before the day's start (see the module docstring).
SPARE = 50


def range_for_day(day: date, now: datetime) -> str | None:
    """The shortest heatmap range that covers ``day`` from before its start; None: none."""
    start = day_bounds(day)[0]
    if start >= now:
        return None
    return heatmap_range_for(start - (now - start) / SPARE, now)


def _fetch(part: Part) -> FetchDays:
    def fetch(resources: Any, member: Any, days: list[date]) -> Fetched:
        cg = resources.coinglass
        client: CoinGlassClient = cg.client()
        fetched = Fetched()
        now = clock.now_utc()
        by_range: dict[str, list[date]] = {}
        for day in days:
            chosen = range_for_day(day, now)
            if chosen is None:
                fetched.unavailable[day] = (
                    "CoinGlass's liquidation heatmap reaches one year back at most (range=1y)"
                )
            else:
                by_range.setdefault(chosen, []).append(day)
        for range_, group in by_range.items():
            frames: list[pl.DataFrame] = []
            refused: dict[str, str] = {}
            interval: timedelta | None = None
            for scope in HEATMAP_SCOPES:
                try:
                    answer = client.liquidation_heatmap(
                        member.perp, scope=scope, range_=range_, exchange=cg.exchange,
                        pair=member.coinglass_pair, coin=member.coin,
                    )  # fmt: skip
                except VendorRefused as exc:  # the plan or the symbol: a definite "no"
                    refused[scope] = str(exc)
                    continue
                frames.append(answer.tiles if part == "tiles" else answer.candles)
                interval = answer.candle_interval
            if not frames:
                why = "; ".join(f"{scope}: {text}" for scope, text in refused.items())
                for day in group:
                    fetched.unavailable[day] = f"CoinGlass refused the heatmap ({why})"
                continue
            fetched.frames.update(split_days(pl.concat(frames), group))
            for day in group:
                fetched.provenance[day] = {
                    "heatmap_range": range_,
                    "candle_interval_seconds": interval.total_seconds() if interval else None,
                    "scopes": [s for s in HEATMAP_SCOPES if s not in refused],
                    **({"refused_scopes": refused} if refused else {}),
                }
                fetched.day_metadata[day] = {"heatmap_range": range_}
        fetched.requests = client.request_count
        return fetched

    return fetch


@dataclass(frozen=True)
class Picture:
    """A heatmap day drawn: the PNG, which day and which scope."""

    png: bytes
    symbol: str
    day: date
    scope: str

    def metadata(self, name: str = "heatmap") -> dict[str, Any]:
        image = base64.b64encode(self.png).decode()
        return {
            name: dg.MetadataValue.md(
                f"![{self.symbol} {self.day} heatmap](data:image/png;base64,{image})"
            ),
            f"{name}_day": self.day.isoformat(),
            f"{name}_scope": self.scope,
        }


def newest_picture(
    instance: dg.DagsterInstance, lake: Lake, env: str, symbol: str, days: list[date]
) -> tuple[Picture | None, dict[date, str]]:
    """The newest of ``days`` whose tiles pass the gate, drawn over its candles (the pair
    scope when stored; no line when the candles do not pass theirs), None when no day has
    usable tiles; and the days of ``days`` left out, with why."""
    left_out, _, tiles = unusable_days(instance, lake, HEATMAP_TILES, symbol, days, env)
    frame = tiles.collect().with_columns(_day=partition_day_expr())
    if frame.is_empty():
        return None, left_out
    day = frame["_day"].max()
    of_day = frame.filter(pl.col("_day") == day).drop("_day")
    scopes = set(of_day["scope"].to_list())
    scope = "pair" if "pair" in scopes else sorted(scopes)[0]
    day_tiles = of_day.filter(pl.col("scope") == scope)
    _, _, candles = unusable_days(instance, lake, HEATMAP_CANDLES, symbol, [day], env)
    day_candles = candles.filter(pl.col("scope") == scope).collect()
    title = f"{symbol} {day} liquidation heatmap ({scope})"
    return Picture(heatmap_png(day_tiles, day_candles, title), symbol, day, scope), left_out


def _picture(
    context: dg.AssetExecutionContext, lake: Lake, names: list[str], days: list[date]
) -> Mapping[str, Any]:
    env = context.resources.dataset.env
    if not names:
        return {}
    picture, _ = newest_picture(context.instance, lake, env, names[0], days)
    return picture.metadata() if picture else {}


def _origin(resources: Any) -> str:
    return resources.coinglass.base_url + COINGLASS_PAIR_HEATMAP


def _asset(table: Table, part: Part, reads: tuple[Table, ...] = (), extras: Any = None) -> Any:
    return raw_asset(table, "market_structure", {"coinglass"}, _fetch(part), _origin,
                     reads=reads, range_extras=extras)  # fmt: skip


heatmap_assets = [
    _asset(HEATMAP_CANDLES, "candles"),
    _asset(HEATMAP_TILES, "tiles", reads=(HEATMAP_CANDLES,), extras=_picture),
]
