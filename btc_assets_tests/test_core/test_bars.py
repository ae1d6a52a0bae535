from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from btc_assets.core.bars import BINANCE_INTERVALS, bar_duration, expected_source_count, resample
from btc_assets.core.schema import BAR_SCHEMA, KLINE_SCHEMA, TS, conform
from btc_assets_tests import fixtures

FIXTURE = fixtures.path("binance_spot_csv/BTCUSDT-1m-2024-09-21.csv")
CSV_COLUMNS = [
    "open_time_ms", "open", "high", "low", "close", "volume", "close_time_ms",
    "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
]  # fmt: skip
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def klines(minutes: list[int], symbol: str = "BTCUSDT", base: float = 100.0) -> pl.DataFrame:
    """1m bars with ts = T0 + m minutes and values that make first/last/min/max visible."""
    rows = [
        {
            "symbol": symbol,
            "ts": T0 + timedelta(minutes=m),
            "open": base + m,
            "high": base + m + 0.5 + (10.0 if m == 7 else 0.0),
            "low": base + m - 0.5 - (10.0 if m == 9 else 0.0),
            "close": base + m + 0.25,
            "volume": float(m),
            "quote_volume": float(m) * base,
            "taker_buy_volume": m / 2,
            "taker_buy_quote_volume": m * base / 2,
            "trades": m,
        }
        for m in minutes
    ]
    return pl.DataFrame(rows, schema=KLINE_SCHEMA)


def fixture_klines() -> pl.DataFrame:
    raw = pl.read_csv(FIXTURE, has_header=False, new_columns=CSV_COLUMNS)
    ts = (pl.col("close_time_ms") + 1).cast(TS)  # close time 00:00:59.999 -> label 00:01
    return conform(raw.with_columns(symbol=pl.lit("BTCUSDT"), ts=ts), KLINE_SCHEMA)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_right_closed_labelling_and_aggregates() -> None:
    bars = resample(klines(list(range(1, 17))).lazy(), "15m").collect()
    assert bars.schema == pl.Schema(BAR_SCHEMA)
    assert bars["ts"].to_list() == [at(15), at(30)]
    first = bars.row(0, named=True)
    assert first["open"] == 101.0  # ts 00:01
    assert first["close"] == 115.25  # ts 00:15
    assert first["high"] == 117.5  # minute 7 carries the spike
    assert first["low"] == 98.5  # minute 9 carries the dip (below minute 1)
    assert first["volume"] == sum(range(1, 16))
    assert first["taker_buy_volume"] == sum(range(1, 16)) / 2
    assert first["trades"] == sum(range(1, 16))
    assert first["source_count"] == 15
    second = bars.row(1, named=True)
    assert (second["open"], second["close"], second["source_count"]) == (116.0, 116.25, 1)


def test_missing_minute_gives_short_bar_and_empty_window_gives_no_row() -> None:
    minutes = [m for m in range(1, 16) if m != 4] + [46]  # nothing in (00:15, 00:45]
    bars = resample(klines(minutes).lazy(), "15m").collect()
    assert bars["ts"].to_list() == [at(15), at(60)]
    assert bars["source_count"].to_list() == [14, 1]


def test_symbols_resampled_independently_from_unsorted_input() -> None:
    a = klines(list(range(1, 16)), "AAA", base=100.0)
    b = klines(list(range(11, 31)), "BBB", base=500.0)
    mixed = pl.concat([a, b]).sample(fraction=1.0, shuffle=True, seed=3)
    bars = resample(mixed.lazy(), "15m").collect()
    assert bars.select("symbol", "ts", "source_count").rows() == [
        ("AAA", at(15), 15),
        ("BBB", at(15), 5),
        ("BBB", at(30), 15),
    ]
    bbb_first = bars.filter(pl.col("symbol") == "BBB").row(0, named=True)
    assert (bbb_first["open"], bbb_first["close"]) == (511.0, 515.25)


def test_real_day_literals() -> None:
    one_min = fixture_klines()
    bars = resample(one_min.lazy(), "15m").collect()
    assert bars.height == 96
    assert bars["source_count"].unique().to_list() == [15]
    first = bars.row(0, named=True)
    assert first["ts"] == datetime(2024, 9, 21, 0, 15, tzinfo=UTC)
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        63201.05, 63201.06, 63040.0, 63071.18,
    )  # fmt: skip
    assert first["volume"] == pytest.approx(87.3898, rel=1e-12)
    assert first["trades"] == 19032
    daily = resample(one_min.lazy(), "1d").collect()
    assert daily["ts"].to_list() == [datetime(2024, 9, 22, tzinfo=UTC)]
    assert daily["source_count"].item() == 1440 == expected_source_count("1d")
    assert daily["volume"].item() == pytest.approx(8375.34608, rel=1e-12)
    assert daily["trades"].item() == 1283611


def test_empty_input_keeps_schema() -> None:
    out = resample(pl.LazyFrame(schema=KLINE_SCHEMA), "15m").collect()
    assert out.is_empty()
    assert out.schema == pl.Schema(BAR_SCHEMA)


def test_duplicate_keys_resolved_by_stored_order() -> None:
    df = klines([1, 2, 2, 3])
    df = df.with_columns(
        open=pl.Series([1.0, 2.0, 3.0, 4.0]), close=pl.Series([1.0, 2.0, 3.0, 4.0])
    )
    lone = resample(df.head(3).lazy(), "15m").collect().row(0, named=True)
    assert (lone["open"], lone["close"], lone["source_count"]) == (1.0, 3.0, 3)
    first_at_dup = resample(df.tail(3).lazy(), "15m").collect().row(0, named=True)
    assert first_at_dup["open"] == 2.0  # the first stored of the two 00:02 rows


def test_null_ts_rows_are_dropped() -> None:
    df = pl.concat([klines([1, 2]), klines([3]).with_columns(ts=None)])
    bars = resample(df.lazy(), "15m").collect()
    assert bars["source_count"].to_list() == [2]


def test_stays_lazy() -> None:
    assert isinstance(resample(klines([1]).lazy(), "1h"), pl.LazyFrame)


@pytest.mark.parametrize(
    ("every", "minutes"),
    [("1m", 1), ("15m", 15), ("1h", 60), ("4h", 240), ("1h30m", 90), ("1d", 1440)],
)
def test_expected_source_count(every: str, minutes: int) -> None:
    assert expected_source_count(every) == minutes
    assert bar_duration(every) == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    "every", ["1mo", "1y", "30s", "1ms", "0m", "", "15", "m15", "7m", "1w", "2d"]
)
def test_rejects_intervals_without_fixed_minute_length(every: str) -> None:
    with pytest.raises(ValueError, match="interval"):
        bar_duration(every)
    with pytest.raises(ValueError):
        resample(klines([1]).lazy(), every)


@st.composite
def random_klines(draw: st.DrawFn) -> pl.DataFrame:
    minutes = sorted(draw(st.sets(st.integers(1, 3 * 1440), min_size=1, max_size=300)))
    n = len(minutes)
    prices = draw(st.lists(st.floats(1.0, 1e5), min_size=n, max_size=n))
    spreads = draw(st.lists(st.floats(0.0, 100.0), min_size=n, max_size=n))
    # Venue amounts: decimals of at most 8 places (Binance's), up to 15 significant digits,
    # as the float a parser reads them into.
    units = st.integers(0, 10**15 - 1)
    volumes = [u / 10**8 for u in draw(st.lists(units, min_size=n, max_size=n))]
    takers = [u / 10**8 for u in draw(st.lists(units, min_size=n, max_size=n))]
    return pl.DataFrame(
        {
            "symbol": "BTCUSDT",
            "ts": [at(m) for m in minutes],
            "open": prices,
            "high": [p + s for p, s in zip(prices, spreads, strict=True)],
            "low": [p - s / 2 for p, s in zip(prices, spreads, strict=True)],
            "close": prices,
            "volume": volumes,
            "quote_volume": volumes,
            "taker_buy_volume": takers,
            "taker_buy_quote_volume": takers,
            "trades": list(range(n)),
        },
        schema=KLINE_SCHEMA,
    )


@settings(max_examples=60, deadline=None)
@given(df=random_klines(), every=st.sampled_from(BINANCE_INTERVALS))
def test_resample_invariants(df: pl.DataFrame, every: str) -> None:
    bars = resample(df.lazy(), every).collect()
    step_ms = bar_duration(every) // timedelta(milliseconds=1)
    ms = pl.col("ts").dt.epoch("ms")
    window = ((ms + step_ms - 1) // step_ms * step_ms).cast(TS)  # ceil to the grid = label
    labelled = df.with_columns(window=window)

    assert bars.height == labelled["window"].n_unique()
    assert bars["source_count"].sum() == df.height
    assert bars["volume"].sum() == pytest.approx(df["volume"].sum(), rel=1e-9, abs=1e-9)
    assert bars["trades"].sum() == df["trades"].sum()

    reference = (  # the textbook definition: right-closed dynamic windows, labelled right
        df.lazy()
        .sort("symbol", "ts", maintain_order=True)
        .group_by_dynamic("ts", every=every, closed="right", label="right", group_by="symbol")
        .agg(
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume").sum(),
            pl.col("trades").sum(),
            pl.len().cast(pl.Int64).alias("source_count"),
        )
        .select(list(bars.columns))
        .collect()
    )
    # The float sums of the textbook version may be a bit off the exact ones: close, not equal.
    assert_frame_equal(bars, reference, check_exact=False, rel_tol=1e-12)

    # Volumes are exact: the float nearest the decimal sum of the 1m decimals, as the
    # venue's own bar of the interval would print it.
    for column in ("volume", "taker_buy_volume"):
        exact: dict[datetime, Decimal] = {}
        for stamp, value in labelled.select("window", column).iter_rows():
            exact[stamp] = exact.get(stamp, Decimal(0)) + Decimal(repr(value))
        got = dict(bars.select("ts", column).iter_rows())
        assert got == {stamp: float(total) for stamp, total in exact.items()}, column

    joined = labelled.join(bars, left_on="window", right_on="ts", suffix="_bar")
    assert joined.height == df.height  # every input lands in the bar labelled by its window
    assert (joined["high_bar"] >= joined["high"]).all()
    assert (joined["low_bar"] <= joined["low"]).all()
