"""Binance substitutes of the CoinGlass inputs of the feature table, and the *_source columns."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from btc_assets.core.features import build_features
from btc_assets.core.gates import (
    feature_quality_by_day,
    price_divergence_by_day,
    source_shares_by_day,
    source_shares_of_day,
)
from btc_assets.core.schema import (
    BAR_SCHEMA,
    COINGLASS_AGG_TAKER_SCHEMA,
    COINGLASS_FUNDING_SCHEMA,
    COINGLASS_LIQUIDATION_SCHEMA,
    COINGLASS_OI_SCHEMA,
    COINGLASS_PRICE_SCHEMA,
    COINGLASS_TAKER_SCHEMA,
    DERIVED_FEATURES,
    FEATURE_SCHEMA,
    FEATURE_SOURCES,
    FUNDING_SCHEMA,
    KLINE_SCHEMA,
    METRICS_SCHEMA,
    partition_day_expr,
)
from btc_assets_tests.test_core.test_features import END as RANDOM_END
from btc_assets_tests.test_core.test_features import START as RANDOM_START
from btc_assets_tests.test_core.test_features import _perturb, random_inputs

D1 = datetime(2024, 3, 1, tzinfo=UTC)
D2 = D1 + timedelta(days=1)
END = D2 + timedelta(days=1)
BAR = timedelta(minutes=15)
H = timedelta(hours=1)
SYMBOL = "BTCUSDT"
NEW_SOURCES = list(FEATURE_SOURCES)  # the per-day source columns (funding_source is older)
COINGLASS_INPUTS = ("price", "oi", "funding", "pair_taker", "agg_taker", "liquidations")


def times(first: datetime, last: datetime, step: timedelta = BAR) -> list[datetime]:
    """[first, last], both included."""
    return [first + k * step for k in range((last - first) // step + 1)]


def lazy(rows: list[dict[str, object]], schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    return pl.LazyFrame([{"symbol": SYMBOL, **r} for r in rows], schema=schema)


# ---------------------------------------------------------------- literal Binance inputs


def perp_row(k: int, t: datetime) -> dict[str, object]:
    o = 40_000.0 + 10 * k
    volume = 10.0 + k % 5
    quote = volume * (o + 1)
    return {"ts": t, "open": o, "high": o + 5, "low": o - 5, "close": o + 1, "volume": volume,
            "quote_volume": quote, "taker_buy_volume": volume / 2,
            "taker_buy_quote_volume": quote * (0.4 + 0.02 * (k % 10)), "trades": 7,
            "source_count": 15}  # fmt: skip


def spot_row(k: int, t: datetime) -> dict[str, object]:
    quote = 500.0 + 7 * (k % 13)
    return {"ts": t, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 2.0,
            "quote_volume": quote, "taker_buy_volume": 1.0, "taker_buy_quote_volume": quote / 2,
            "trades": 3, "source_count": 15}  # fmt: skip


def metrics_value(t: datetime) -> float:
    minutes = int((t - D1).total_seconds() // 60)
    return 8e9 + 1e6 * (minutes % 17)


def metrics(first: datetime, last: datetime, skip: tuple[datetime, ...] = ()) -> pl.LazyFrame:
    rows = [
        {"ts": t, "sum_open_interest": metrics_value(t) / 40_000, "sum_open_interest_value":
         metrics_value(t), "count_toptrader_long_short_ratio": 1.1,
         "sum_toptrader_long_short_ratio": 1.2, "count_long_short_ratio": 1.3,
         "sum_taker_long_short_vol_ratio": 0.9}
        for t in times(first, last, timedelta(minutes=5)) if t not in skip
    ]  # fmt: skip
    return lazy(rows, METRICS_SCHEMA)


# settlements every 8h from D1 on (none before: nothing to place before D1)
SETTLEMENTS = {D1 + k * 8 * H: (1.0 + k) * 1e-5 for k in range(6)}


def settlements() -> pl.LazyFrame:
    rows = [{"ts": t, "funding_rate": r, "mark_price": 40_000.0} for t, r in SETTLEMENTS.items()]
    return lazy(rows, FUNDING_SCHEMA)


def rate_in_force(t: datetime) -> float:
    return SETTLEMENTS[max(s for s in SETTLEMENTS if s <= t)]


def binance(first: datetime = D1, last: datetime = END) -> dict[str, pl.LazyFrame]:
    """Perp and spot 15m bars and perp 1m klines for every bar in (first, last]."""
    stamps = times(first + BAR, last)
    minutes = times(first + timedelta(minutes=1), last, timedelta(minutes=1))
    one_minute = [
        {"ts": t, "open": c, "high": c, "low": c, "close": c, "volume": 1.0, "quote_volume": c,
         "taker_buy_volume": 0.5, "taker_buy_quote_volume": c / 2, "trades": 1}
        for t, c in ((t, 40_000.0 + (k % 7) * 3.0) for k, t in enumerate(minutes))
    ]  # fmt: skip
    return {
        "perp_15m": lazy([perp_row(k, t) for k, t in enumerate(stamps)], BAR_SCHEMA),
        "spot_15m": lazy([spot_row(k, t) for k, t in enumerate(stamps)], BAR_SCHEMA),
        "perp_1m": lazy(one_minute, KLINE_SCHEMA),
    }


# ---------------------------------------------------------------- literal CoinGlass inputs


def coinglass(stamps: list[datetime]) -> dict[str, pl.LazyFrame]:
    """CoinGlass inputs at ``stamps``, at levels unlike Binance's (aggregates, USD)."""
    price, oi, funding, taker, agg, liq = [], [], [], [], [], []
    for k, t in enumerate(stamps):
        c = 40_001.0 + 10 * k
        price.append({"ts": t, "open": c - 1, "high": c + 4, "low": c - 6, "close": c * 1.0002,
                      "volume_usd": 1e6 + k})  # fmt: skip
        oi.append({"ts": t, "open": 3e10, "high": 3e10, "low": 3e10, "close": 3e10 + 1e7 * (k % 9)})
        funding.append({"ts": t, "funding_rate": 5e-5 + 1e-6 * (k % 4),
                        "funding_source": "coinglass_oi_weight"})  # fmt: skip
        taker.append({"ts": t, "taker_buy_volume_usd": 7e5 + k, "taker_sell_volume_usd": 6e5})
        agg.append({"ts": t, "spot_buy_volume_usd": 2e6, "spot_sell_volume_usd": 2e6 + k,
                    "futures_buy_volume_usd": 9e6, "futures_sell_volume_usd": 8e6})  # fmt: skip
        liq.append({"ts": t, "long_liquidation_usd": 1e4 + k, "short_liquidation_usd": 2e4})
    return {
        "price": lazy(price, COINGLASS_PRICE_SCHEMA),
        "oi": lazy(oi, COINGLASS_OI_SCHEMA),
        "funding": lazy(funding, COINGLASS_FUNDING_SCHEMA),
        "pair_taker": lazy(taker, COINGLASS_TAKER_SCHEMA),
        "agg_taker": lazy(agg, COINGLASS_AGG_TAKER_SCHEMA),
        "liquidations": lazy(liq, COINGLASS_LIQUIDATION_SCHEMA),
    }


def as_coinglass(day: datetime) -> dict[str, pl.LazyFrame]:
    """The substitute definitions written out by hand as CoinGlass inputs for one day. OI and
    funding also at ``day`` 00:00, the last bar of the day before, which the metrics snapshot
    and the settlement at 00:00 give the substituted build too."""
    stamps = times(day, day + 24 * H)
    perp = {r["ts"]: r for r in binance()["perp_15m"].collect().iter_rows(named=True)}
    spot = {r["ts"]: r for r in binance()["spot_15m"].collect().iter_rows(named=True)}
    price, oi, funding, taker, agg = [], [], [], [], []
    for t in stamps:
        value = metrics_value(t)
        oi.append({"ts": t, "open": value, "high": value, "low": value, "close": value})
        funding.append({"ts": t, "funding_rate": rate_in_force(t),
                        "funding_source": "binance_settlement"})  # fmt: skip
        if t == day:
            continue
        p, s = perp[t], spot[t]
        ohlc = {c: p[c] for c in ("open", "high", "low", "close")}
        price.append({"ts": t, **ohlc, "volume_usd": p["quote_volume"]})
        buy = p["taker_buy_quote_volume"]
        taker.append({"ts": t, "taker_buy_volume_usd": buy,
                      "taker_sell_volume_usd": p["quote_volume"] - buy})  # fmt: skip
        agg.append({"ts": t, "futures_buy_volume_usd": p["quote_volume"],
                    "futures_sell_volume_usd": 0.0, "spot_buy_volume_usd": s["quote_volume"],
                    "spot_sell_volume_usd": 0.0})  # fmt: skip
    return {
        "price": lazy(price, COINGLASS_PRICE_SCHEMA),
        "oi": lazy(oi, COINGLASS_OI_SCHEMA),
        "funding": lazy(funding, COINGLASS_FUNDING_SCHEMA),
        "pair_taker": lazy(taker, COINGLASS_TAKER_SCHEMA),
        "agg_taker": lazy(agg, COINGLASS_AGG_TAKER_SCHEMA),
        "liquidations": pl.LazyFrame(schema=COINGLASS_LIQUIDATION_SCHEMA),
    }


def empty_coinglass() -> dict[str, pl.LazyFrame]:
    return coinglass([])


def build(
    cg: dict[str, pl.LazyFrame], start: datetime = D1, end: datetime = END, **extra: object
) -> pl.DataFrame:
    frames = {**binance(), **cg}
    return build_features(**frames, start=start, end=end, **extra).collect()  # type: ignore[arg-type]


def on_day(frame: pl.DataFrame, day: datetime) -> pl.DataFrame:
    return frame.filter(partition_day_expr() == day.date())


# ---------------------------------------------------------------- definitions


def test_each_substitute_follows_its_definition() -> None:
    """No CoinGlass row at all: every column group from its Binance substitute."""
    gap = D1 + 3 * BAR  # its on-grid OI snapshot is missing; the 5-min ones around it are not
    out = build(empty_coinglass(), D1, D1 + 2 * H, metrics=metrics(D1, END, skip=(gap,)),
                funding_settlements=settlements())  # fmt: skip
    stamps = times(D1 + BAR, D1 + 2 * H)
    assert out["ts"].to_list() == stamps and out.schema == pl.Schema(FEATURE_SCHEMA)
    perp = binance()["perp_15m"].collect()
    spot = binance()["spot_15m"].collect()
    for k, row in enumerate(out.iter_rows(named=True)):
        p, t = perp.row(k, named=True), stamps[k]
        assert (row["open"], row["high"], row["low"], row["close"]) == (
            p["open"], p["high"], p["low"], p["close"])  # fmt: skip
        assert row["volume_usd"] == p["quote_volume"]
        buy = p["taker_buy_quote_volume"]
        assert row["cvd_perp_15m"] == buy - (p["quote_volume"] - buy)
        window = range(max(0, k - 3), k + 1)  # (ts - 60m, ts]: this bar and the 3 before
        perp_sum = sum(perp["quote_volume"][j] for j in window)
        spot_sum = sum(spot["quote_volume"][j] for j in window)
        assert row["perp_share_60m"] == pytest.approx(perp_sum / (perp_sum + spot_sum), rel=1e-12)
        carried = t == gap
        expected_oi = metrics_value(t - BAR if carried else t)  # never the 5-min one before
        assert (row["oi_now"], row["oi_now_imputed"]) == (expected_oi, carried), t
        assert (row["funding_now"], row["funding_now_imputed"]) == (rate_in_force(t), False)
        assert row["liq_long_usd"] is None and row["liq_short_usd"] is None
    cvd = out["cvd_perp_15m"].to_list()
    assert out["cvd_perp_24h"].to_list() == pytest.approx(np.cumsum(cvd).tolist(), rel=1e-12)
    sources = out.select(*NEW_SOURCES, "funding_source").unique().rows()
    assert sources == [("binance_perp_15m", "binance_metrics", "binance_perp_taker",
                        "binance_quote_volume", "unavailable", "binance_settlement")]  # fmt: skip


def test_share_substitute_skips_a_bar_missing_on_either_side() -> None:
    frames = binance()
    missing = D1 + 2 * BAR
    frames["spot_15m"] = frames["spot_15m"].filter(pl.col("ts") != missing)
    out = build_features(**frames, **empty_coinglass(), start=D1, end=D1 + H).collect()
    perp = frames["perp_15m"].collect()["quote_volume"].to_list()
    spot = binance()["spot_15m"].collect()["quote_volume"].to_list()
    for k, kept in ((2, [0, 2]), (3, [0, 2, 3])):  # bar 1 (D1 + 30m) is skipped
        want = sum(perp[j] for j in kept) / sum(perp[j] + spot[j] for j in kept)
        assert out["perp_share_60m"][k] == pytest.approx(want, rel=1e-12)


# ---------------------------------------------------------------- the hand-over


def test_hand_over_differs_only_in_sources_and_substituted_values() -> None:
    """Day 1 has no CoinGlass row, day 2 has all of them. The build equals a CoinGlass-only
    build whose day-1 CoinGlass inputs are the substitute definitions written out by hand:
    the same windows over the mixed series, only the *_source columns differ."""
    day2 = coinglass(times(D2 + BAR, END))
    mixed = build(day2, metrics=metrics(D1, END), funding_settlements=settlements())
    by_hand = {name: pl.concat([as_coinglass(D1)[name], day2[name]]) for name in day2}
    coinglass_only = build(by_hand)
    assert mixed.height == 192
    assert_frame_equal(mixed.drop(NEW_SOURCES), coinglass_only.drop(NEW_SOURCES), check_exact=True)
    first = on_day(mixed, D1).select(*NEW_SOURCES, "funding_source").unique().rows()
    second = on_day(mixed, D2).select(*NEW_SOURCES, "funding_source").unique().rows()
    assert first == [("binance_perp_15m", "binance_metrics", "binance_perp_taker",
                      "binance_quote_volume", "unavailable", "binance_settlement")]  # fmt: skip
    assert second == [("coinglass",) * 5 + ("coinglass_oi_weight",)]
    # the second day's per-bar values are CoinGlass's own
    cg = day2["price"].collect()
    assert on_day(mixed, D2)["close"].to_list() == cg["close"].to_list()
    assert (on_day(coinglass_only, D1)["price_source"] == "coinglass").all()


def test_hand_over_passes_the_gates() -> None:
    """Substituted days are complete: no gap, no imputation, no null derived feature after
    the warm-up, and the null liquidations of an unavailable day count nowhere."""
    day2 = coinglass(times(D2 + BAR, END))
    out = build(day2, metrics=metrics(D1, END), funding_settlements=settlements())
    figures = feature_quality_by_day(
        out.lazy(), [D1.date(), D2.date()], every="15m", warm_from=D1 + BAR,
        derived=DERIVED_FEATURES, imputed_flags=("oi_now_imputed", "funding_now_imputed"),
        percentiles=("oi_pctile_30d", "funding_pctile_30d"),
    )  # fmt: skip
    assert figures["gap_bars"].to_list() == [0, 0]
    assert figures["derived_nulls"].to_list() == [0, 0]
    assert figures["oi_now_imputed_share"].to_list() == [0.0, 0.0]
    assert on_day(out, D1)["liq_long_usd"].null_count() == 96
    reference = binance()["perp_15m"].select("ts", "close")
    divergence = price_divergence_by_day(out.lazy(), reference, [D1.date(), D2.date()], 5.0)
    assert divergence["substituted_bars"].to_list() == [96, 0]
    assert divergence["max_abs_bp"][0] == 0.0 and divergence["max_abs_bp"][1] > 0.0


def test_source_shares_by_day() -> None:
    day2 = coinglass(times(D2 + BAR, END))
    gone = D2 + 10 * H  # a null funding value: a null funding_source, counted as such
    day2["funding"] = day2["funding"].filter(
        (pl.col("ts") < gone) | (pl.col("ts") > gone + 3 * BAR)
    )
    out = build(day2, metrics=metrics(D1, END))  # no settlements: day 1 funding unavailable
    shares = source_shares_by_day(out.lazy(), [D1.date(), D2.date(), date(2024, 3, 9)])
    assert shares.columns == ["day", "column", "source", "bars", "share"]
    assert set(shares["day"].to_list()) == {D1.date(), D2.date()}
    first, second = source_shares_of_day(shares, D1.date()), source_shares_of_day(shares, D2.date())
    assert first["price_source"] == {"binance_perp_15m": 1.0}
    assert first["oi_source"] == {"binance_metrics": 1.0}
    assert first["liq_source"] == {"unavailable": 1.0}
    assert first["funding_source"] == {"none": 1.0}
    assert second["price_source"] == {"coinglass": 1.0}
    # 4 bars without a row: 3 carried (the CoinGlass source) and 1 null
    assert second["funding_source"] == {"coinglass_oi_weight": 95 / 96, "none": 1 / 96}
    assert shares.group_by("day", "column").agg(pl.col("share").sum())["share"].to_list() == (
        pytest.approx([1.0] * 12))  # fmt: skip


# ---------------------------------------------------------------- within a day


def test_partial_coinglass_day_keeps_coinglass_and_its_gaps() -> None:
    """A CoinGlass day with missing bars is not patched from Binance bar by bar."""
    cg = coinglass(times(D2 + BAR, END))
    gaps = {"price": [D2 + 10 * BAR], "oi": times(D2 + 20 * BAR, D2 + 25 * BAR),
            "pair_taker": [D2 + 30 * BAR], "agg_taker": times(D2 + 40 * BAR, D2 + 48 * BAR),
            "funding": times(D2 + 50 * BAR, D2 + 56 * BAR)}  # fmt: skip
    for name, stamps in gaps.items():
        cg[name] = cg[name].filter(~pl.col("ts").is_in(stamps))
    # Binance OI and settlements for day 2 only (none in the look-back: the percentiles of
    # both builds see the same history)
    day2_metrics = metrics(D2 + timedelta(minutes=5), END)
    day2_settlements = settlements().filter(pl.col("ts") > D2)
    with_subs = build(cg, D2, END, metrics=day2_metrics, funding_settlements=day2_settlements)
    without = build(cg, D2, END)
    assert_frame_equal(with_subs, without, check_exact=True)
    assert (with_subs.select(NEW_SOURCES) == "coinglass").to_numpy().all()
    at = {r["ts"]: r for r in with_subs.iter_rows(named=True)}
    assert at[D2 + 10 * BAR]["close"] is None
    assert at[D2 + 30 * BAR]["cvd_perp_15m"] is None
    assert [at[t]["oi_now_imputed"] for t in times(D2 + 20 * BAR, D2 + 25 * BAR)] == [
        True, True, True, False, False, False]  # fmt: skip
    assert at[D2 + 23 * BAR]["oi_now"] is None
    assert at[D2 + 48 * BAR]["perp_share_60m"] is None  # 9 bars missing: the window is empty


def test_oi_carry_never_crosses_a_hand_over() -> None:
    """Day 1 CoinGlass, day 2 Binance metrics without its first snapshot: the first bar of
    day 2 carries the Binance snapshot of day 1's last bar, not CoinGlass's value."""
    cg = coinglass(times(D1 + BAR, D2))
    out = build(cg, metrics=metrics(D1, END, skip=(D2 + BAR,)))
    first = on_day(out, D2).row(0, named=True)
    assert first["oi_source"] == "binance_metrics"
    assert (first["oi_now"], first["oi_now_imputed"]) == (metrics_value(D2), True)
    assert on_day(out, D1)["oi_now"].to_list() == cg["oi"].collect()["close"].to_list()


def test_without_substitute_inputs_an_empty_day_reads_as_before() -> None:
    """No metrics, no settlements: OI and funding of a day without CoinGlass rows are
    unavailable, the day before carried 3 bars, flagged, then null."""
    out = build(coinglass(times(D1 + BAR, D2)))
    day2 = on_day(out, D2)
    assert (day2["oi_source"] == "unavailable").all()
    assert day2["oi_now_imputed"].to_list()[:4] == [True, True, True, False]
    assert day2["oi_now"].null_count() == 93
    assert day2["funding_now"].null_count() == 93 and day2["funding_source"].null_count() == 93
    assert (day2["price_source"] == "binance_perp_15m").all()  # perp_15m is always an input


# ---------------------------------------------------------------- random inputs: time and engines

SUBSTITUTED_UNTIL = RANDOM_START + timedelta(days=2)  # CoinGlass's plan window starts here


def _random_metrics(seed: int, first: datetime, last: datetime) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    stamps = [t for t in times(first, last, timedelta(minutes=5)) if rng.random() > 0.03]
    values = rng.integers(5, 12, len(stamps)).astype(float) * 1e9  # ties for the percentile
    return pl.DataFrame(
        {"symbol": SYMBOL, "ts": stamps, "sum_open_interest": values / 4e4,
         "sum_open_interest_value": values, "count_toptrader_long_short_ratio": 1.0,
         "sum_toptrader_long_short_ratio": 1.0, "count_long_short_ratio": 1.0,
         "sum_taker_long_short_vol_ratio": 1.0},
        schema=METRICS_SCHEMA,
    )  # fmt: skip


def _random_settlements(seed: int, first: datetime, last: datetime) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    stamps = times(first - 24 * H, last, 8 * H)
    rates = rng.choice([-1e-4, 0.0, 1e-4], len(stamps))
    return pl.DataFrame(
        {"symbol": SYMBOL, "ts": stamps, "funding_rate": rates, "mark_price": 4e4},
        schema=FUNDING_SCHEMA,
    )


def substituted(inputs: dict[str, pl.DataFrame], seed: int) -> dict[str, pl.DataFrame]:
    """CoinGlass rows before ``SUBSTITUTED_UNTIL`` and on one later day of agg taker only
    removed (a refused endpoint); metrics and settlements added."""
    refused = SUBSTITUTED_UNTIL + timedelta(days=1)
    out = dict(inputs)
    for name in COINGLASS_INPUTS:
        keep = pl.col("ts") > SUBSTITUTED_UNTIL
        if name == "agg_taker":
            keep &= (pl.col("ts") <= refused) | (pl.col("ts") > refused + timedelta(days=1))
        out[name] = inputs[name].filter(keep)
    first, last = inputs["perp_15m"]["ts"].min(), inputs["perp_15m"]["ts"].max()
    out.setdefault("metrics", _random_metrics(seed, first, last))  # type: ignore[arg-type]
    out.setdefault("funding_settlements", _random_settlements(seed, first, last))  # type: ignore[arg-type]
    return out


def run(inputs: dict[str, pl.DataFrame], start: datetime = RANDOM_START) -> pl.LazyFrame:
    return build_features(**{n: f.lazy() for n, f in inputs.items()}, start=start, end=RANDOM_END)


def test_random_substituted_days_are_complete() -> None:
    out = run(substituted(random_inputs(4, RANDOM_START - timedelta(days=31), RANDOM_END,
                                        "coinglass"), 4)).collect()  # fmt: skip
    early = out.filter(pl.col("ts") <= SUBSTITUTED_UNTIL)
    late = out.filter(pl.col("ts") > SUBSTITUTED_UNTIL)
    assert (early["price_source"] == "binance_perp_15m").all()
    assert (early["funding_source"].drop_nulls() == "binance_settlement").all()
    assert (late["oi_source"] == "coinglass").all()
    assert set(late["share_source"].unique()) == {"coinglass", "binance_quote_volume"}
    assert early["oi_pctile_30d"].null_count() < 10 and early["funding_now"].null_count() == 0


@pytest.mark.parametrize(
    "offset",
    [
        timedelta(days=1, hours=5, minutes=7),  # inside a substituted day
        timedelta(days=2, hours=3, minutes=15),  # the first CoinGlass day, on a bar close
    ],
)
def test_no_look_ahead_with_substitutes(offset: timedelta) -> None:
    """Every input after the cut-off redrawn, the days' sources kept (which days CoinGlass
    has is a fact of the fetch, not a value after the cut-off)."""
    cutoff = RANDOM_START + offset
    base = random_inputs(5, RANDOM_START - timedelta(days=31), RANDOM_END, "coinglass")
    inputs = substituted(base, 5)
    redrawn = _perturb(base, cutoff, "coinglass")
    after = pl.col("ts") > cutoff
    for name, fresh in (("metrics", _random_metrics), ("funding_settlements", _random_settlements)):
        other = fresh(77, cutoff - H, RANDOM_END + H)
        redrawn[name] = pl.concat([inputs[name].filter(~after), other.filter(after)])
    perturbed = substituted(redrawn, 5)
    before, later = run(inputs).collect(), run(perturbed).collect()
    early = pl.col("ts") <= cutoff
    assert_frame_equal(before.filter(early), later.filter(early), check_exact=True)
    assert_frame_equal(before.select(NEW_SOURCES), later.select(NEW_SOURCES))
    for name in ("close", "oi_now", "funding_now", "cvd_perp_24h", "oi_pctile_30d"):
        assert not before.filter(~early)[name].equals(later.filter(~early)[name]), name


def test_engines_and_run_lengths_agree_with_substitutes() -> None:
    inputs = substituted(
        random_inputs(8, RANDOM_START - timedelta(days=31), RANDOM_END, "binance"), 8
    )
    query = run(inputs)
    full = query.collect(engine="in-memory")
    assert_frame_equal(full, query.collect(engine="streaming"), check_exact=True)
    for day in (SUBSTITUTED_UNTIL - timedelta(days=1), SUBSTITUTED_UNTIL):
        history = {
            name: frame.filter(pl.col("ts") >= (day if name == "perp_1m" else day - 31 * 24 * H))
            for name, frame in inputs.items()
        }
        one_day = run(history, start=day).collect(engine="streaming")
        assert_frame_equal(one_day, full.filter(pl.col("ts") > day), check_exact=True)
