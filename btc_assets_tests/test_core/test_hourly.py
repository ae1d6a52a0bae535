"""features_1h: grid, returns, basis, realized vol, the 15m roll-up, the funding fallback, the
CoinAPI cross-check, and the point-in-time join of published series (visibility, revisions,
vendor nulls, staleness, shuffled input, a perturbation property)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from btc_assets.core.forecast_schema import (
    COINAPI_BAR_SCHEMA,
    COINAPI_FUNDING_SCHEMA,
    JoinedSeries,
    features_1h_schema,
)
from btc_assets.core.hourly import NO_PREVIOUS_SESSION, build_features_1h
from btc_assets.core.pit import PointInTimeError, lookahead_rows
from btc_assets.core.schema import BAR_SCHEMA, FEATURE_SCHEMA, KLINE_SCHEMA, TS

D = datetime(2024, 6, 3, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
SYMBOL = "BTCUSDT"
FRED = JoinedSeries("fred_dgs10_", "fred_series", "DGS10", ("value",), 72)
AV = JoinedSeries("av_spy_", "alphavantage_daily", "SPY", ("close", "ret_1d"), 96)
CQ = JoinedSeries("cq_netflow_total_", "cryptoquant_flows", "BTC", ("value",), 72,
                  metric="netflow", exchange="binance", field="netflow_total")  # fmt: skip
PUBLISHED_SCHEMA = {"event_time": TS, "available_at": TS, "value": pl.Float64()}


def h(hours: float) -> datetime:
    return D + timedelta(hours=hours)


def rows(schema: dict[str, pl.DataType], data: list[dict[str, Any]]) -> pl.LazyFrame:
    """A frame in ``schema``; columns a row does not name are null."""
    full = [{"symbol": SYMBOL, **{c: None for c in schema if c != "symbol"}, **r} for r in data]
    return pl.LazyFrame(full, schema=schema)


def bars_1h(closes: dict[float, float], schema: dict[str, pl.DataType] = BAR_SCHEMA) -> Any:
    """Hourly bars {hour offset: close}, OHLC = close, volume 10."""
    return rows(schema, [
        {"ts": h(k), "open": c, "high": c, "low": c, "close": c, "volume": 10.0,
         "quote_volume": 10.0 * c}
        for k, c in closes.items()
    ])  # fmt: skip


def klines(closes: dict[datetime, float]) -> pl.LazyFrame:
    return rows(KLINE_SCHEMA, [{"ts": t, "close": c} for t, c in closes.items()])


def published(data: list[tuple[float, float, float | None]], **extra: list[Any]) -> pl.DataFrame:
    """(event hour, available hour, value) rows, plus ``extra`` columns."""
    frame = pl.DataFrame(
        {"event_time": [h(e) for e, _, _ in data], "available_at": [h(a) for _, a, _ in data],
         "value": [v for _, _, v in data]},
        schema=PUBLISHED_SCHEMA,
    )  # fmt: skip
    return frame.with_columns(**{k: pl.Series(v) for k, v in extra.items()})


def empty(schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    return pl.LazyFrame(schema=schema)


def build(start: datetime = D, end: datetime = D + 3 * H, **inputs: Any) -> pl.DataFrame:
    args: dict[str, Any] = {
        "perp_1h": empty(BAR_SCHEMA), "spot_1h": empty(BAR_SCHEMA),
        "perp_1m": empty(KLINE_SCHEMA), "bars_15m": empty(FEATURE_SCHEMA),
        "coinapi_perp": empty(COINAPI_BAR_SCHEMA), "coinapi_spot": empty(COINAPI_BAR_SCHEMA),
        "coinapi_funding": empty(COINAPI_FUNDING_SCHEMA), "published": {}, "series": [],
    }  # fmt: skip
    args.update(inputs)
    return build_features_1h(symbol=SYMBOL, start=start, end=end, **args)


def approx(values: list[float | None]) -> list[Any]:
    return [None if v is None else pytest.approx(v, rel=1e-12) for v in values]


def test_grid_returns_basis_and_realized_vol_by_hand() -> None:
    perp = bars_1h({-23: 55.0, -3: 88.0, -1: 110.0, 0: 100.0, 1: 110.0, 3: 121.0})  # no 02:00
    spot = bars_1h({1: 100.0, 3: 0.0})
    minutes = klines({
        h(-22): 100.0, h(-22) + M: 110.0,  # r0, inside the 24h windows of 01:00 and 02:00
        h(1) - 2 * M: 100.0, h(1) - M: 101.0, h(1): 100.0,  # hour 01:00: 3 minutes, 2 returns
        h(1) + M: 102.0, h(1) + 3 * M: 103.0, h(1) + 4 * M: 104.0,  # 01:02 is missing
    })  # fmt: skip
    out = build(perp_1h=perp, spot_1h=spot, perp_1m=minutes)
    assert out["ts"].to_list() == [h(1), h(2), h(3)]
    assert out["symbol"].to_list() == [SYMBOL] * 3
    assert out["close"].to_list() == [110.0, None, 121.0]  # the missing bar keeps its row
    assert out["spot_close"].to_list() == [100.0, None, 0.0]
    assert out["basis"].to_list() == approx([0.1, None, None])  # spot_close 0: no basis
    assert out["ret_1h"].to_list() == approx([0.1, None, None])  # 02:00 missing, not 01:00
    assert out["ret_4h"].to_list() == approx([110 / 88 - 1, None, 0.1])
    assert out["ret_24h"].to_list() == approx([1.0, None, None])
    r0, a, b = math.log(1.1), math.log(1.01), math.log(100 / 101)
    c, d = math.log(1.02), math.log(104 / 103)  # 01:01 returns over the hour's boundary
    assert out["minutes_1h"].to_list() == [3, 3, 0]
    assert out["rv_1h"].to_list() == approx([math.hypot(a, b), math.hypot(c, d), None])
    assert out["rv_24h"].to_list() == approx([
        math.sqrt(r0**2 + a**2 + b**2),
        math.sqrt(r0**2 + a**2 + b**2 + c**2 + d**2),
        math.sqrt(a**2 + b**2 + c**2 + d**2),  # r0 at 02:01 yesterday has left the window
    ])  # fmt: skip


def test_15m_rollup_funding_fallback_and_coinapi_cross_check() -> None:
    q = timedelta(minutes=15)
    f15 = rows(FEATURE_SCHEMA, [
        {"ts": h(-23), "oi_now": 50.0, "funding_now": 0.0001},
        {"ts": h(-1), "oi_now": 150.0},
        {"ts": h(0), "oi_now": 100.0},
        {"ts": h(0) + q, "cvd_perp_15m": 1.0, "liq_long_usd": 5.0},
        {"ts": h(0) + 2 * q, "cvd_perp_15m": 2.0},
        {"ts": h(0) + 3 * q, "cvd_perp_15m": 3.0, "liq_long_usd": 7.0},
        {"ts": h(1), "cvd_perp_15m": 4.0, "oi_now": 200.0, "oi_source": "coinglass",
         "oi_pctile_30d": 0.5, "funding_pctile_30d": 0.25, "funding_now": None},
        {"ts": h(1) + 2 * q, "cvd_perp_15m": -1.5},
        {"ts": h(3), "funding_now": 0.0001, "funding_source": "coinglass_oi_weight",
         "oi_now": 300.0},
    ])  # fmt: skip
    coinapi_funding = rows(COINAPI_FUNDING_SCHEMA, [
        {"ts": h(1), "funding_rate": 0.0003}, {"ts": h(3), "funding_rate": 0.0009},
    ])  # fmt: skip
    out = build(
        perp_1h=bars_1h({1: 110.0}),
        bars_15m=f15,
        coinapi_funding=coinapi_funding,
        coinapi_perp=bars_1h({1: 100.0}, COINAPI_BAR_SCHEMA),
        coinapi_spot=bars_1h({1: 99.0, 2: 98.0}, COINAPI_BAR_SCHEMA),
    )
    assert out["bars_15m"].to_list() == [4, 1, 1]
    assert out["cvd_perp_1h"].to_list() == [10.0, -1.5, None]
    assert out["liq_long_usd"].to_list() == [12.0, None, None]
    assert out["liq_short_usd"].to_list() == [None, None, None]  # missing is not zero
    assert out["oi_now"].to_list() == [200.0, None, 300.0]  # the row at ts, not the hour's
    assert out["oi_source"].to_list() == ["coinglass", None, None]
    assert out["oi_pctile_30d"].to_list() == [0.5, None, None]
    assert out["funding_pctile_30d"].to_list() == [0.25, None, None]
    assert out["oi_delta_1h"].to_list() == approx([1.0, None, None])
    assert out["oi_delta_4h"].to_list() == approx([None, None, 1.0])  # 300 / oi(-1h) 150
    assert out["oi_delta_24h"].to_list() == approx([3.0, None, None])
    # bars_15m has no funding at 01:00: CoinAPI's; at 03:00 bars_15m wins over CoinAPI
    assert out["funding_rate"].to_list() == [0.0003, None, 0.0001]
    assert out["funding_source"].to_list() == ["coinapi", None, "coinglass_oi_weight"]
    assert out["funding_delta_24h"].to_list() == approx([0.0002, None, None])
    assert out["coinapi_perp_close"].to_list() == [100.0, None, None]
    assert out["coinapi_spot_close"].to_list() == [99.0, 98.0, None]
    assert out["coinapi_divergence_bp"].to_list() == approx([1000.0, None, None])
    assert out["coinapi_source"].to_list() == ["coinapi", "unavailable", "unavailable"]


def joined(series: JoinedSeries, frame: pl.DataFrame, hours: list[int]) -> pl.DataFrame:
    out = build(start=h(-1), end=h(max(hours)), published={series.prefix: frame},
                series=[series])  # fmt: skip
    assert lookahead_rows(out, series.prefix) == 0
    return out.filter(pl.col("ts").is_in([h(k) for k in hours]))


def test_a_value_published_at_16_is_not_visible_in_the_15_bar() -> None:
    out = joined(FRED, published([(0, 16, 4.2)]), [15, 16, 17])
    assert out["fred_dgs10_value"].to_list() == [None, 4.2, 4.2]
    assert out["fred_dgs10_null_reason"].to_list() == ["nothing published yet", None, None]
    assert out["fred_dgs10_source"].to_list() == [None, "fred", "fred"]
    assert out["fred_dgs10_event_time"].to_list() == [None, D, D]
    assert out["fred_dgs10_available_at"].to_list() == [None, h(16), h(16)]


def test_a_revision_shows_only_from_its_vintage() -> None:
    vintages = published([(0, 16, 4.0), (0, 20, 4.5)])  # same day, revised at 20:00
    out = joined(FRED, vintages, [16, 19, 20, 21])
    assert out["fred_dgs10_value"].to_list() == [4.0, 4.0, 4.5, 4.5]
    assert out["fred_dgs10_available_at"].to_list() == [h(16), h(16), h(20), h(20)]


def test_vendor_nulls_and_stale_values_are_null_with_a_reason() -> None:
    # FRED "." (a holiday) is not an observation: the bar keeps the value known before it
    out = joined(FRED, published([(-24, 2, 4.1), (0, 16, None)]), [17])
    assert out["fred_dgs10_value"].to_list() == [4.1]
    assert out["fred_dgs10_source"].to_list() == ["fred"]
    assert out["fred_dgs10_event_time"].to_list() == [h(-24)]
    assert out["fred_dgs10_null_reason"].to_list() == [None]
    out = joined(FRED, published([(0, 16, None)]), [17])  # only a "." known: nothing
    assert out["fred_dgs10_value"].to_list() == [None]
    assert out["fred_dgs10_null_reason"].to_list() == ["nothing published yet"]
    short = JoinedSeries("fred_dgs10_", "fred_series", "DGS10", ("value",), 24)
    out = joined(short, published([(0, 16, 4.0)]), [24, 25])
    assert out["fred_dgs10_value"].to_list() == [4.0, None]  # 24h old is still fresh
    assert out["fred_dgs10_source"].to_list() == ["fred", None]
    assert out["fred_dgs10_null_reason"][0] is None
    assert out["fred_dgs10_null_reason"][1].startswith("stale")


def test_cryptoquant_revised_rows_name_their_source() -> None:
    frame = published([(0, 2, 10.0), (0, 30, 12.0)], revised=[False, True])
    out = joined(CQ, frame, [1, 3, 31])
    assert out["cq_netflow_total_value"].to_list() == [None, 10.0, 12.0]
    assert out["cq_netflow_total_source"].to_list() == [None, "cryptoquant", "cryptoquant_revised"]
    assert "cq_netflow_total_revised" not in out.columns


def test_alphavantage_ret_1d_is_point_in_time() -> None:
    frame = pl.DataFrame(
        {"event_time": [h(-24), h(0), h(-48)], "available_at": [h(-3), h(21), h(22)],
         "close": [100.0, 110.0, 50.0]},  # the session of -48h arrives late: never the latest
        schema={"event_time": TS, "available_at": TS, "close": pl.Float64()},
    )  # fmt: skip
    out = joined(AV, frame, [20, 21, 23])
    assert out["av_spy_close"].to_list() == [100.0, 110.0, 110.0]
    assert out["av_spy_ret_1d"].to_list() == approx([None, 0.1, 0.1])
    assert out["av_spy_null_reason"].to_list() == [NO_PREVIOUS_SESSION, None, None]
    assert out["av_spy_source"].to_list() == ["alphavantage"] * 3


def test_shuffled_published_rows_give_the_same_frame_and_no_lookahead() -> None:
    fred = published([(-24, -8, 1.0), (0, 16, 2.0), (0, 40, 2.5), (24, 41, None), (-24, 30, 9)])
    cq = published([(-24, 2, 5.0), (0, 26, 6.0), (0, 44, 7.0)], revised=[False, False, True])
    av = pl.DataFrame(
        {"event_time": [h(-24), h(0), h(24)], "available_at": [h(-3), h(21), h(45)],
         "close": [100.0, 110.0, 99.0]},
        schema={"event_time": TS, "available_at": TS, "close": pl.Float64()},
    )  # fmt: skip
    series = [FRED, AV, CQ]
    frames = {FRED.prefix: fred, AV.prefix: av, CQ.prefix: cq}
    shuffled = {k: v.sample(fraction=1.0, shuffle=True, seed=7) for k, v in frames.items()}
    assert any(not shuffled[k].equals(frames[k]) for k in frames)
    out = build(end=h(48), published=frames, series=series)
    assert_frame_equal(build(end=h(48), published=shuffled, series=series), out)
    for s in series:
        assert lookahead_rows(out, s.prefix) == 0
    assert out.filter(pl.col("ts") == h(44))["cq_netflow_total_value"].item() == 7.0


def test_a_published_row_without_available_at_is_refused() -> None:
    frame = published([(0, 16, 4.0)]).with_columns(available_at=pl.lit(None, TS))
    with pytest.raises(PointInTimeError, match="available_at"):
        build(published={FRED.prefix: frame}, series=[FRED])


def test_output_schema_is_the_contract_even_without_spot_or_any_input() -> None:
    series = [FRED, AV, CQ]
    expected = list(features_1h_schema(series).items())
    out = build(perp_1h=bars_1h({1: 100.0, 2: 101.0}), series=series)  # no spot, no CoinAPI
    assert list(out.schema.items()) == expected
    assert out["spot_close"].null_count() == 3 and out["basis"].null_count() == 3
    assert out["coinapi_source"].to_list() == ["unavailable"] * 3
    assert out["fred_dgs10_null_reason"].to_list() == ["nothing published yet"] * 3
    bare = build(end=h(5), series=series)  # nothing at all: the grid still holds every hour
    assert list(bare.schema.items()) == expected
    assert bare["ts"].to_list() == [h(k) for k in range(1, 6)]
    assert bare["minutes_1h"].to_list() == [0] * 5 and bare["bars_15m"].to_list() == [0] * 5


# --- perturbation: nothing stamped (or published) after T changes a row at or before T


def _random_inputs(seed: int, start: datetime, end: datetime) -> dict[str, Any]:
    """Random-ish inputs over [start, end] with about a tenth of the rows missing."""
    rng = np.random.default_rng(seed)

    def stamps(step: timedelta) -> list[datetime]:
        n = (end - start) // step
        return [start + k * step for k in range(n + 1) if rng.random() > 0.1]

    def walk(n: int) -> list[float]:
        return list(100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n))))

    def bars(step: timedelta, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
        ts = stamps(step)
        closes = walk(len(ts))
        return rows(schema, [{"ts": t, "close": c, "volume": float(rng.random())}
                             for t, c in zip(ts, closes, strict=True)])  # fmt: skip

    q = stamps(timedelta(minutes=15))
    f15 = rows(FEATURE_SCHEMA, [
        {"ts": t, "oi_now": float(rng.uniform(1, 2)), "cvd_perp_15m": float(rng.normal()),
         "funding_now": None if rng.random() < 0.3 else float(rng.normal(0, 1e-4)),
         "funding_source": "coinglass_oi_weight", "liq_long_usd": float(rng.random()),
         "oi_pctile_30d": float(rng.random())}
        for t in q
    ])  # fmt: skip
    fund = rows(COINAPI_FUNDING_SCHEMA, [
        {"ts": t, "funding_rate": float(rng.normal(0, 1e-4))} for t in stamps(H)
    ])  # fmt: skip

    def pub(n: int, revised: bool = False) -> pl.DataFrame:
        event = [int(e) for e in rng.integers(-3, 3, n)]  # days relative to D
        delay = [float(x) for x in rng.uniform(0, 40, n)]
        data = [
            (24.0 * e, 24.0 * e + d, float(rng.normal())) for e, d in zip(event, delay, strict=True)
        ]
        flags = [bool(x) for x in rng.random(n) < 0.3]
        return published(data, revised=flags) if revised else published(data)

    av = pub(8).rename({"value": "close"}).with_columns(pl.col("close").abs() + 1)
    return {
        "perp_1h": bars(H, BAR_SCHEMA), "spot_1h": bars(H, BAR_SCHEMA),
        "perp_1m": bars(M, KLINE_SCHEMA), "bars_15m": f15,
        "coinapi_perp": bars(H, COINAPI_BAR_SCHEMA), "coinapi_spot": bars(H, COINAPI_BAR_SCHEMA),
        "coinapi_funding": fund,
        "published": {FRED.prefix: pub(12), AV.prefix: av, CQ.prefix: pub(12, revised=True)},
    }  # fmt: skip


def _splice(before: Any, after: Any, cut: datetime, clock: str = "ts") -> Any:
    """``before``'s rows stamped <= cut, then ``after``'s rows stamped after it."""
    keep = before.filter(pl.col(clock) <= cut)
    return pl.concat([keep, after.filter(pl.col(clock) > cut)])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), other=st.integers(0, 2**31), cut=st.integers(-2, 48))
def test_nothing_after_a_cut_changes_an_earlier_row(seed: int, other: int, cut: int) -> None:
    start, end = D, h(48)
    first = _random_inputs(seed, start - timedelta(hours=24), end)
    second = _random_inputs(other, start - timedelta(hours=24), end)  # other values and rows
    t = h(cut)
    mixed = {k: _splice(first[k], second[k], t) for k in first if k != "published"}
    mixed["published"] = {
        # a published row is "after T" by when it became known: this changes later values and
        # adds new observations and revisions of old days, all published after T
        k: _splice(v, second["published"][k], t, clock="available_at")
        for k, v in first["published"].items()
    }
    series = [FRED, AV, CQ]
    a = build(start, end, series=series, **first)
    b = build(start, end, series=series, **mixed)
    assert a.height == b.height == 48
    assert_frame_equal(a.filter(pl.col("ts") <= t), b.filter(pl.col("ts") <= t))
    for s in series:
        assert lookahead_rows(a, s.prefix) == 0 and lookahead_rows(b, s.prefix) == 0
