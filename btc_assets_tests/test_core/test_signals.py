"""Signals on 15m bars: thresholds to the last bit, time-based windows, episodes, run windows."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from btc_assets.core.market_schema import ALERT_SCHEMA
from btc_assets.core.schema import TS
from btc_assets.core.signals import (
    SIGNAL_HISTORY,
    SignalThresholds,
    detect_signals,
    signal_figures,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
BAR = timedelta(minutes=15)
DEFAULTS = {
    "close": 100.0,
    "oi_now": 1e9,
    "funding_now": 1e-4,
    "liq_long_usd": 250.0,
    "liq_short_usd": 0.0,
}
SCHEMA = {"symbol": pl.String(), "ts": TS, **{c: pl.Float64() for c in DEFAULTS}}


def at(i: int) -> datetime:
    return T0 + i * BAR


def bars(
    n: int,
    symbol: str = "BTCUSDT",
    drop: tuple[int, ...] = (),
    **columns: dict[int, float | None],
) -> pl.DataFrame:
    """n bars at T0 + i * 15m with DEFAULTS, `columns` overriding bar i, `drop` removed."""
    keep = [i for i in range(n) if i not in drop]
    data: dict[str, list[object]] = {"symbol": [symbol] * len(keep), "ts": [at(i) for i in keep]}
    for name, default in DEFAULTS.items():
        overrides = columns.get(name, {})
        data[name] = [overrides.get(i, default) for i in keep]
    return pl.DataFrame(data, schema=SCHEMA)


def from_(first: int, n: int, value: float | None) -> dict[int, float | None]:
    return dict.fromkeys(range(first, n), value)


def detect(
    frame: pl.DataFrame, thresholds: SignalThresholds | None = None, start: int = -1
) -> pl.DataFrame:
    return detect_signals(frame, at(start), at(10_000), thresholds)


def rows(alerts: pl.DataFrame, kind: str) -> list[tuple[datetime, str, float, float]]:
    alerts = alerts.filter(pl.col("kind") == kind)
    return list(zip(*[alerts[c] for c in ("ts", "severity", "value", "threshold")], strict=True))


# --- liquidation cascade -------------------------------------------------------------------
# Baseline bars carry 250 USD of long liquidations (1000 USD an hour); the hour ending at bar
# T carries 4 x `per_bar`; price falls 1 % and OI in coins 2 % at T (in USD, the 2 % on top of
# the 1 %), so 1250 per bar is a ratio of 5.0.
T, N = 105, 110


def cascade_bars(per_bar: float = 1250.0, side: str = "long", **kwargs: object) -> pl.DataFrame:
    columns: dict[str, dict[int, float | None]] = {
        "close": from_(T, N, 99.0),
        "oi_now": from_(T, N, 0.98 * 0.99e9),
        f"liq_{side}_usd": from_(T - 3, T + 1, per_bar),
    }
    if side == "short":
        columns["liq_short_usd"] = {**from_(0, N, 250.0), **columns["liq_short_usd"]}
        columns["liq_long_usd"] = from_(0, N, 0.0)
        columns["close"] = from_(T, N, 101.0)
    columns.update(kwargs.pop("columns", {}))  # type: ignore[arg-type]
    return bars(N, **columns, **kwargs)  # type: ignore[arg-type]


def test_cascade_fires_exactly_at_ratio_5() -> None:
    alerts = detect(cascade_bars())
    assert rows(alerts, "liquidation_cascade") == [(at(T), "medium", 5.0, 5.0)]
    [row] = alerts.filter(pl.col("kind") == "liquidation_cascade").iter_rows(named=True)
    assert row["dedupe_key"] == "liquidation_cascade:BTCUSDT:2024-03-02T02:15Z:medium"
    details = json.loads(row["details"])
    assert list(details) == sorted(details)
    assert details == {
        "baseline_hourly_usd": 1000.0,
        "dominant_side": "long",
        "episode_start": "2024-03-02T02:15Z",
        "liq_1h_usd": 5000.0,
        "move": pytest.approx(math.log(0.99), rel=1e-5),
        "oi_change": pytest.approx(math.log(0.98), rel=1e-5),
    }


def test_cascade_just_below_ratio_5_is_silent() -> None:
    figures = signal_figures(cascade_bars(1249.75), at(T - 1), at(T))
    assert figures["ratio"].to_list() == [pytest.approx(4.999)]
    assert detect(cascade_bars(1249.75)).is_empty()


def test_cascade_ratio_10_is_high_as_well() -> None:
    alerts = detect(cascade_bars(2500.0))
    assert rows(alerts, "liquidation_cascade") == [
        (at(T), "high", 10.0, 10.0),
        (at(T), "medium", 10.0, 5.0),
    ]
    assert alerts["dedupe_key"].n_unique() == 2


def cascades(frame: pl.DataFrame) -> pl.DataFrame:
    return detect(frame).filter(pl.col("kind") == "liquidation_cascade")


def test_cascade_direction_follows_the_dominant_side() -> None:
    # (OI falls 2 % in coins in every frame here; with the price up 1 % that is 3 % in USD.)
    longs_price_up = cascade_bars(columns={"close": from_(T, N, 101.0)})
    assert cascades(longs_price_up).is_empty()
    shorts_price_up = cascade_bars(side="short", columns={"oi_now": from_(T, N, 0.98 * 1.01e9)})
    [row] = cascades(shorts_price_up).iter_rows(named=True)
    assert (row["ts"], row["value"]) == (at(T), 5.0)
    assert json.loads(row["details"])["dominant_side"] == "short"
    shorts_price_down = cascade_bars(side="short", columns={"close": from_(T, N, 99.0)})
    assert cascades(shorts_price_down).is_empty()


def test_cascade_needs_falling_oi() -> None:
    assert detect(cascade_bars(columns={"oi_now": from_(0, N, 1e9)})).is_empty()
    # a 0.5 % drop in coins is above the 1 % minimum drop
    assert detect(cascade_bars(columns={"oi_now": from_(T, N, 0.995 * 0.99e9)})).is_empty()


def test_open_interest_is_counted_in_coins_not_dollars() -> None:
    # USD open interest down 1 % with the price, not one position closed: no OI fall
    same_coins = cascade_bars(columns={"oi_now": from_(T, N, 0.99e9)})
    assert signal_figures(same_coins, at(T - 1), at(T))["oi_change"].to_list() == [
        pytest.approx(0.0, abs=1e-12)
    ]
    assert detect(same_coins).is_empty()
    # a 5 % price jump carries USD open interest with it: no shock in coins
    jump = bars(30, close=from_(10, 30, 105.0), oi_now=from_(10, 30, 1.05e9))
    assert detect(jump).filter(pl.col("kind") == "oi_shock").is_empty()


def test_cascade_needs_the_bar_an_hour_ago() -> None:
    gap = cascade_bars(drop=(T - 4,))
    assert detect(gap).is_empty()
    [figures] = signal_figures(gap, at(T - 1), at(T)).iter_rows(named=True)
    assert figures["move"] is None and figures["oi_change"] is None


def test_cascade_needs_the_whole_hour_of_liquidations() -> None:
    assert detect(cascade_bars(columns={"liq_short_usd": {T - 1: None}})).is_empty()
    assert detect(cascade_bars(drop=(T - 2,))).is_empty()


def test_cascade_baseline_needs_90_percent_of_its_bars() -> None:
    # the baseline of bar T covers bars T-99 .. T-4; 87 of 96 present is >= 90 %
    nine_missing = tuple(range(10, 19))
    [row] = detect(cascade_bars(drop=nine_missing)).iter_rows(named=True)
    assert row["value"] == pytest.approx(5000 * 24 / (87 * 250))  # the sum is divided by 24
    assert detect(cascade_bars(drop=(*nine_missing, 19))).is_empty()
    zero_baseline = cascade_bars(columns={"liq_long_usd": {**from_(0, T - 3, 0.0)}})
    assert signal_figures(zero_baseline, at(T - 1), at(T))["ratio"].to_list() == [None]


# --- funding anomaly ---------------------------------------------------------------------
def funding_bars(n: int, spikes: dict[int, float | None], **kwargs: object) -> pl.DataFrame:
    """History alternating 1.1e-4 / 0.9e-4 (mean 1e-4, std ~1e-5), then `spikes`."""
    history = {i: 1.1e-4 if i % 2 else 0.9e-4 for i in range(n)}
    return bars(n, funding_now={**history, **spikes}, **kwargs)  # type: ignore[arg-type]


def test_funding_z_is_against_the_strictly_earlier_30_days() -> None:
    frame = funding_bars(700, {690: 1.4e-4})
    history = np.array(frame["funding_now"][:690])
    expected = (1.4e-4 - history.mean()) / history.std(ddof=1)
    [figures] = signal_figures(frame, at(689), at(690)).iter_rows(named=True)
    assert figures["z"] == pytest.approx(expected, rel=1e-9)
    assert 3 < expected < 5
    [row] = detect(frame).iter_rows(named=True)
    assert (row["kind"], row["ts"], row["severity"], row["threshold"]) == (
        "funding_anomaly",
        at(690),
        "medium",
        3.0,
    )
    assert row["value"] == figures["z"]
    details = json.loads(row["details"])
    assert details["n"] == 690 and details["mean"] == pytest.approx(1e-4, rel=1e-5)
    assert details["std"] == pytest.approx(history.std(ddof=1), rel=1e-5)


def test_funding_fires_at_its_threshold_to_the_last_bit() -> None:
    frame = funding_bars(700, {690: 1.3e-4})
    z = signal_figures(frame, at(689), at(690))["z"][0]
    exact = SignalThresholds(funding_z=z, funding_z_high=2 * z)
    assert rows(detect(frame, exact), "funding_anomaly") == [(at(690), "medium", z, z)]
    above = SignalThresholds(funding_z=math.nextafter(z, math.inf), funding_z_high=2 * z)
    assert detect(frame, above).is_empty()


def test_negative_funding_anomaly_has_signed_thresholds() -> None:
    alerts = detect(funding_bars(700, {690: 0.4e-4}))
    assert [(s, t) for _, s, _, t in rows(alerts, "funding_anomaly")] == [
        ("high", -5.0),
        ("medium", -3.0),
    ]
    assert all(v < -5 for _, _, v, _ in rows(alerts, "funding_anomaly"))


def test_funding_needs_672_values_of_history() -> None:
    assert detect(funding_bars(672, {671: 5e-4})).is_empty()  # 671 values before bar 671
    assert not detect(funding_bars(673, {672: 5e-4})).is_empty()
    assert detect(funding_bars(673, {672: 5e-4, 5: None})).is_empty()  # a null is no value


def test_funding_with_constant_history_is_silent() -> None:
    assert detect(bars(700, funding_now={690: 5e-4})).is_empty()
    assert signal_figures(bars(700), at(0), at(699))["z"].null_count() == 699


# --- OI shock and episodes ----------------------------------------------------------------
def oi_bars(levels: dict[int, float], n: int = 30, **kwargs: object) -> pl.DataFrame:
    """OI 1e9, multiplied from bar i on by each levels[i] (cumulatively)."""
    oi, factor = {}, 1.0
    for i in range(n):
        factor *= levels.get(i, 1.0)
        oi[i] = 1e9 * factor
    return bars(n, oi_now=oi, **kwargs)  # type: ignore[arg-type]


def test_oi_shock_fires_at_its_threshold_to_the_last_bit() -> None:
    frame = oi_bars({10: 1.031})
    c = signal_figures(frame, at(9), at(10))["oi_1h_change"][0]
    assert c == pytest.approx(math.log(1.031))
    exact = SignalThresholds(oi_shock=c, oi_shock_high=0.06)
    assert rows(detect(frame, exact), "oi_shock")[0] == (at(10), "medium", c, c)
    above = SignalThresholds(oi_shock=math.nextafter(c, math.inf), oi_shock_high=0.06)
    assert detect(frame, above).is_empty()


def test_consecutive_firing_bars_are_one_alert() -> None:
    # a 4 % step fires at the 4 bars whose hour-ago bar is before it: one episode
    frame = oi_bars({10: 1.04})
    figures = signal_figures(frame, at(9), at(14))
    assert figures["oi_1h_change"].to_list()[:5] == [pytest.approx(math.log(1.04))] * 4 + [0.0]
    [row] = detect(frame).iter_rows(named=True)
    assert (row["ts"], row["severity"], row["threshold"]) == (at(10), "medium", 0.03)
    assert row["dedupe_key"] == "oi_shock:BTCUSDT:2024-03-01T02:30Z:medium"
    assert json.loads(row["details"]) == {
        "episode_start": "2024-03-01T02:30Z",
        "oi": 1.04e9,
        "oi_1h_ago": 1e9,
    }


def test_a_missing_bar_splits_an_episode() -> None:
    alerts = detect(oi_bars({10: 1.04}, drop=(12,)))
    assert [r[0] for r in rows(alerts, "oi_shock")] == [at(10), at(13)]
    assert alerts["dedupe_key"].to_list() == [
        "oi_shock:BTCUSDT:2024-03-01T02:30Z:medium",
        "oi_shock:BTCUSDT:2024-03-01T03:15Z:medium",
    ]


def test_a_sign_change_splits_an_episode() -> None:
    # +4 % at bar 10, then 0.95e9 from bar 11: -5 % against 1e9, -9 % against 1.04e9 at bar 14
    alerts = detect(oi_bars({10: 1.04, 11: 0.95 / 1.04}))
    assert [(r[0], r[3]) for r in rows(alerts, "oi_shock")] == [
        (at(10), 0.03),
        (at(11), -0.03),
        (at(14), -0.06),
    ]
    assert alerts["dedupe_key"].to_list() == [
        "oi_shock:BTCUSDT:2024-03-01T02:30Z:medium",
        "oi_shock:BTCUSDT:2024-03-01T02:45Z:medium",
        "oi_shock:BTCUSDT:2024-03-01T02:45Z:high",
    ]


def test_medium_then_high_in_one_episode_gives_two_rows() -> None:
    alerts = detect(oi_bars({10: 1.04, 12: 1.03}))
    assert [(r[0], r[1], r[3]) for r in rows(alerts, "oi_shock")] == [
        (at(10), "medium", 0.03),
        (at(12), "high", 0.06),
    ]
    assert alerts["dedupe_key"].to_list() == [
        "oi_shock:BTCUSDT:2024-03-01T02:30Z:medium",
        "oi_shock:BTCUSDT:2024-03-01T02:30Z:high",
    ]


def test_an_episode_started_before_the_window_gives_no_row() -> None:
    frame = oi_bars({10: 1.04})
    assert detect(frame, start=10).is_empty()  # bars 11..13 still fire
    # but a severity first reached inside the window is reported, keyed by the old start
    [row] = detect(oi_bars({10: 1.04, 12: 1.03}), start=11).iter_rows(named=True)
    assert row["dedupe_key"] == "oi_shock:BTCUSDT:2024-03-01T02:30Z:high"


def test_symbols_do_not_share_windows() -> None:
    cascade = cascade_bars()
    # ETH has only the cascade hour: if it saw BTC's bars it would have a baseline and move
    eth = cascade_bars().filter(pl.col("ts") >= at(T - 4)).with_columns(symbol=pl.lit("ETHUSDT"))
    alerts = detect(pl.concat([eth, cascade]).sort("ts"))
    assert_frame_equal(alerts, detect(cascade))
    # AAA sorts first; its OI shock must not be measured against BTC's bars
    aaa = oi_bars({10: 1.04}, symbol="AAAUSDT", drop=tuple(range(6, 10)))
    assert detect(pl.concat([cascade, aaa])).filter(pl.col("symbol") == "AAAUSDT").is_empty()


def test_output_schema_and_order() -> None:
    both = pl.concat([cascade_bars(2500.0), oi_bars({100: 1.07}, n=N, symbol="AAAUSDT")])
    alerts = detect(both)
    assert alerts.schema == pl.Schema(ALERT_SCHEMA)
    assert alerts.height == 4
    assert_frame_equal(alerts, alerts.sort("symbol", "ts", "kind", "severity"))
    assert detect(bars(10)).schema == pl.Schema(ALERT_SCHEMA)


# --- input and threshold validation -------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cascade_ratio": -1.0}, "cascade_ratio"),
        ({"cascade_ratio_high": 4.0}, "cascade_ratio_high"),
        ({"funding_z": math.nan}, "funding_z"),
        ({"oi_shock_high": 0.01}, "oi_shock_high"),
        ({"funding_min_history": 1}, "funding_min_history"),
        ({"cascade_baseline_coverage": 1.5}, "cascade_baseline_coverage"),
        ({"cascade_min_move": "0.005"}, "cascade_min_move"),
    ],
)
def test_thresholds_are_validated(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"SignalThresholds.{field}="):
        SignalThresholds(**kwargs)  # type: ignore[arg-type]


def test_bad_bars_are_named() -> None:
    duplicated = pl.concat([bars(3), bars(3).slice(1, 1)])
    with pytest.raises(ValueError, match=r"duplicate .* symbol=BTCUSDT ts=2024-03-01T00:15Z"):
        detect(duplicated)
    with pytest.raises(ValueError, match=r"liquidations .* ts=2024-03-01T00:30Z"):
        detect(bars(3, liq_short_usd={2: -1.0}))
    with pytest.raises(ValueError, match=r"missing columns \[.funding_now.\]"):
        detect(bars(3).drop("funding_now"))
    with pytest.raises(ValueError, match=r"start=.*timezone-aware"):
        detect_signals(bars(3), datetime(2024, 3, 1), at(3))


# --- the same alerts from any run window --------------------------------------------------
def random_bars(seed: int, symbol: str, days: int, gap_rate: float) -> pl.DataFrame:
    """A noisy market with OI jumps, liquidation bursts with price drops, funding spikes."""
    rng = np.random.default_rng(seed)
    n = days * 96
    burst = rng.random(n) < 0.01
    liq_long = rng.exponential(200.0, n) * np.where(burst, 30.0, 1.0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, n) - np.where(burst, 0.01, 0.0)))
    jumps = np.where(rng.random(n) < 0.03, rng.normal(0, 0.05, n), 0.0)
    oi = 1e9 * np.exp(np.cumsum(rng.normal(0, 0.002, n) + jumps - np.where(burst, 0.01, 0.0)))
    funding = 1e-4 + rng.normal(0, 1e-5, n) + np.where(rng.random(n) < 0.005, 1e-4, 0.0)
    frame = pl.DataFrame(
        {
            "symbol": symbol,
            "ts": [at(i) for i in range(n)],
            "close": close,
            "oi_now": oi,
            "funding_now": funding,
            "liq_long_usd": liq_long,
            "liq_short_usd": rng.exponential(200.0, n),
        },
        schema=SCHEMA,
    )
    nulls = pl.Series(rng.random(n) < gap_rate)
    frame = frame.with_columns(oi_now=pl.when(nulls).then(None).otherwise("oi_now"))
    return frame.filter(pl.Series(rng.random(n) >= gap_rate))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), gap_rate=st.sampled_from([0.0, 0.005, 0.02]))
def test_day_runs_with_history_equal_one_long_run(seed: int, gap_rate: float) -> None:
    days = 38
    frame = pl.concat([random_bars(seed, s, days, gap_rate) for s in ("BTCUSDT", "ETHUSDT")])
    first_day = T0 + SIGNAL_HISTORY
    whole = detect_signals(frame, first_day, T0 + timedelta(days=days))
    per_day = []
    for d in range(days - SIGNAL_HISTORY.days):
        start, end = first_day + timedelta(days=d), first_day + timedelta(days=d + 1)
        window = frame.filter(pl.col("ts") > start - SIGNAL_HISTORY, pl.col("ts") <= end)
        per_day.append(detect_signals(window, start, end))
    merged = pl.concat(per_day).sort("symbol", "ts", "kind", "severity")
    assert_frame_equal(merged, whole, check_exact=True)
    assert whole["dedupe_key"].is_unique().all()
    assert "oi_shock" in set(whole["kind"])  # the test has teeth
