"""``features_1h`` end to end: rows and checks, as-of joins recomputed from the raw lake,
publication times, the day gate at full depth, a corrupt published day, range invariance,
a look-ahead caught by its checks and the catalog, and the perturbation property.

One lake is built once for the module (``built``): every lake asset over ``DAYS`` (Memorial
Day 2024 to the Thursday after), and the published tables from ``PUBLISHED_FROM`` so that
each day's look-back is whole and a range reads published days a single day does not. The
sandbox's FRED has lost DGS10's observations of 2024-05-20 .. 05-23 (``FRED_GAP``): its
latest value is stale over the long weekend, and the holiday's "." row is published with
Friday's value. Tests that change the lake work on a copy with a fresh instance.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import polars as pl
import pytest

import btc_assets.assets.features_1h as features_1h_module
from btc_assets import clock
from btc_assets.assets.features_1h import published_lookback_days
from btc_assets.core.forecast_schema import JoinedSeries
from btc_assets.core.schema import day_bounds, partition_day_expr
from btc_assets.defs.checks import ERROR_SYMBOLS, QUALITY
from btc_assets.defs.day_gate import check_failures
from btc_assets.defs.definitions import SETTINGS
from btc_assets.defs.forecast_checks import POINT_IN_TIME
from btc_assets.lake import Lake
from btc_assets_tests.test_assets.helpers import (
    as_day,
    build_catalog,
    catalog_metadata,
    evaluations,
    latest_metadata,
    resources,
    run_range,
)

SYMBOL = "BTCUSDT"
FEATURES = "features_1h"
DAYS = ["2024-05-27", "2024-05-28", "2024-05-29", "2024-05-30"]
PUBLISHED_FROM, PUBLISHED_TO = "2024-05-07", "2024-05-26"
PUBLISHED = ["fred_series", "alphavantage_daily", "cryptoquant_flows"]
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)  # the data clock: every day of DAYS has closed
FRED_GAP = [
    {"kind": "gap", "path": "/fred/series/observations", "symbol": "DGS10",
     "day": f"2024-05-{d}"}
    for d in (20, 21, 22, 23)
]  # fmt: skip
HOUR = timedelta(hours=1)
SERIES: dict[str, JoinedSeries] = {s.prefix: s for s in SETTINGS.forecast.joined_series()}
FRED = {s.symbol: s for s in SERIES.values() if s.table == "fred_series"}
HORIZON = timedelta(days=published_lookback_days(list(SERIES.values())))
Key = tuple[str, str, str]


def _pin(monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    """As conftest's ``pinned_clock``, for a module-scoped fixture."""
    offset = at.timestamp() - time.time()
    monkeypatch.setattr(clock, "epoch_seconds", lambda: time.time() + offset)


def _by_key(result: dg.ExecuteInProcessResult) -> dict[Key, dg.AssetCheckEvaluation]:
    return {(e.asset_key.path[-1], e.check_name, e.partition): e for e in evaluations(result)}


@dataclass
class Built:
    root: Path
    lake: Lake
    instance: dg.DagsterInstance
    checks: dict[Key, dg.AssetCheckEvaluation]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("features_1h")
    home = root / "dagster_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test(temp_dir=str(home)) as inst:
        _pin(mp, NOW)
        res = resources(root, sandbox_faults=json.dumps(FRED_GAP))
        assert run_range(inst, res, PUBLISHED_FROM, PUBLISHED_TO, PUBLISHED).success
        result = run_range(inst, res, DAYS[0], DAYS[-1])
        assert result.success
        yield Built(root, Lake(root / "lake"), inst, _by_key(result))


def _days(first: str, last: str) -> list[date]:
    start, end = as_day(first), as_day(last)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _features(lake: Lake, days: list[str], symbol: str = SYMBOL) -> pl.DataFrame:
    read = lake.read_days(FEATURES, symbol, [as_day(d) for d in days])
    assert not read.errors and not read.missing, (read.errors, read.missing)
    return read.frame.collect().sort("ts")


def _published(lake: Lake, table: str, name: str, days: list[date]) -> pl.DataFrame:
    read = lake.read_days(table, name, days)
    assert not read.errors, read.errors
    return read.frame.collect()


def _copy_lake(built: Built, data_dir: Path, without: tuple[str, ...] = (FEATURES,)) -> Lake:
    """The module's lake under ``data_dir`` (the tables of ``without`` left behind)."""
    source = built.root / "lake"
    shutil.copytree(
        source,
        data_dir / "lake",
        ignore=lambda d, names: [n for n in names if Path(d) == source and n in without],
    )
    return Lake(data_dir / "lake")


def _hours(day: str) -> list[datetime]:
    start, _ = day_bounds(as_day(day))
    return [start + HOUR * h for h in range(1, 25)]


def _expected_fred(
    rows: pl.DataFrame, bars: list[datetime], stale: timedelta
) -> list[dict[str, Any]]:
    """The FRED columns each bar should show, recomputed here from the raw rows: the newest
    observation known at ``ts`` (``available_at <= ts``) in its latest vintage known then,
    "." rows being no observation, null when older than ``stale`` (event time) or published
    longer than the look-back before the bar; rows published before the bar's day began,
    minus the look-back, are not read (a day built alone does not have them). ``kind`` says
    which case the bar is."""
    valued = [r for r in rows.iter_rows(named=True) if r["value"] is not None]
    dots = {(r["event_time"], r["available_at"]) for r in rows.iter_rows(named=True)
            if r["value"] is None}  # fmt: skip
    out = []
    for ts in bars:
        reach = day_bounds((ts - timedelta(milliseconds=1)).date())[0] - HORIZON
        known = [r for r in valued if reach < r["available_at"] <= ts]
        if not known:
            out.append({"value": None, "event_time": None, "available_at": None, "kind": "none"})
            continue
        newest = max(r["event_time"] for r in known)
        row = max((r for r in known if r["event_time"] == newest), key=lambda r: r["available_at"])
        if ts - row["available_at"] > HORIZON:
            out.append({"value": None, "event_time": None, "available_at": None, "kind": "none"})
            continue
        shadowed = any(e > newest and reach < a <= ts for e, a in dots)  # a newer "." skipped
        kind = "stale" if ts - row["event_time"] > stale else ("dot" if shadowed else "value")
        out.append({
            "value": None if kind == "stale" else row["value"],
            "event_time": row["event_time"],
            "available_at": row["available_at"],
            "kind": kind,
        })  # fmt: skip
    return out


def _assert_fred_as_expected(frame: pl.DataFrame, name: str, rows: pl.DataFrame) -> list[str]:
    s = FRED[name]
    p = s.prefix
    expected = _expected_fred(rows, frame["ts"].to_list(), timedelta(hours=s.max_staleness_hours))
    for bar, want in zip(frame.iter_rows(named=True), expected, strict=True):
        got = {k: bar[f"{p}{k}"] for k in ("value", "event_time", "available_at")}
        assert got == {k: want[k] for k in got}, (name, bar["ts"], got, want)
        reason = bar[f"{p}null_reason"]
        if want["kind"] == "stale":
            assert reason.startswith("stale"), (name, bar["ts"], reason)
        elif want["kind"] == "none":
            assert reason == "nothing published yet", (name, bar["ts"], reason)
        else:
            assert reason is None and bar[f"{p}source"] == "fred", (name, bar["ts"], reason)
    return [w["kind"] for w in expected]


# --- 1. end to end -----------------------------------------------------------------------------


def test_each_closed_day_has_24_bars_passing_checks_and_fred_is_joined_as_of_publication(
    built: Built,
) -> None:
    frame = _features(built.lake, DAYS)
    for day in DAYS:
        part = frame.filter(partition_day_expr() == as_day(day))
        assert part["ts"].to_list() == _hours(day)
        assert (part["symbol"] == SYMBOL).all()
        assert latest_metadata(built.instance, FEATURES, day)["dagster/row_count"] == 24
        for check in (QUALITY, POINT_IN_TIME):
            evaluation = built.checks[(FEATURES, check, day)]
            assert evaluation.passed, (check, day, evaluation.description)
    # No joined value is from after its bar, and with a whole look-back every series has one.
    for p in SERIES:
        known = frame.select(
            known=(pl.col(f"{p}available_at") <= pl.col("ts")).all(),
            described=(pl.col(f"{p}event_time") <= pl.col("ts")).all(),
            nulls=pl.col(f"{p}available_at").null_count(),
        ).row(0)
        assert known == (True, True, 0), p

    published = _days(PUBLISHED_FROM, DAYS[-1])
    kinds: dict[str, list[str]] = {}
    for name in FRED:
        rows = _published(built.lake, "fred_series", name, published)
        kinds[name] = _assert_fred_as_expected(frame, name, rows)
    # The cases were all met: DGS10 stale over the weekend (its gap), then Friday's value
    # published with Memorial Day's "." (skipped), then ordinary values.
    assert {"stale", "dot", "value"} <= set(kinds["DGS10"])
    stale = frame.filter(pl.col("fred_dgs10_null_reason").str.starts_with("stale"))
    assert stale["ts"].max() == datetime(2024, 5, 29, 4, tzinfo=UTC)
    assert (stale["fred_dgs10_event_time"] == datetime(2024, 5, 17, tzinfo=UTC)).all()


# --- 2. publication time of an Alpha Vantage session -------------------------------------------


def test_a_session_closing_at_16_new_york_is_not_seen_before_its_publication(
    built: Built,
) -> None:
    session = date(2024, 5, 28)  # Tuesday after Memorial Day: the previous session is Friday's
    close = datetime(2024, 5, 28, 16, 0, tzinfo=ZoneInfo("America/New_York"))
    published_at = (close + timedelta(hours=2)).astimezone(UTC)  # the default 2 h delay
    assert published_at == datetime(2024, 5, 28, 22, tzinfo=UTC)  # EDT: 20:00 UTC + 2 h

    raw = _published(built.lake, "alphavantage_daily", "SPY", _days("2024-05-20", DAYS[-1]))
    new = raw.filter(pl.col("session_date") == session).row(0, named=True)
    previous = raw.filter(pl.col("session_date") < session).sort("session_date").row(-1, named=True)
    assert new["available_at"] == published_at
    assert previous["session_date"] == date(2024, 5, 24)
    assert new["close"] != previous["close"]

    frame = _features(built.lake, [DAYS[1]])
    day = frame.filter(pl.col("ts") <= datetime(2024, 5, 29, tzinfo=UTC))
    before = day.filter(pl.col("ts") < published_at)
    after = day.filter(pl.col("ts") >= published_at)
    # 16:00 New York is 20:00 UTC: the 20:00 and 21:00 bars still show Friday's close.
    assert before["ts"].max() == published_at - HOUR and after["ts"].min() == published_at
    assert before.height == 21 and after.height == 3
    assert (before["av_spy_close"] == previous["close"]).all()
    assert (before["av_spy_event_time"] == previous["event_time"]).all()
    assert (after["av_spy_close"] == new["close"]).all()
    assert (after["av_spy_available_at"] == published_at).all()
    assert after["av_spy_ret_1d"].to_list() == pytest.approx(
        [new["close"] / previous["close"] - 1] * 3
    )


# --- 3. the day gate at full depth -------------------------------------------------------------


def test_a_blocked_perp_day_stops_that_symbols_day_and_shortens_the_next_days_lookback(
    tmp_path: Path, instance: dg.DagsterInstance, pinned_clock: Callable[[datetime], None]
) -> None:
    pinned_clock(NOW)
    days = DAYS[:3]
    bad = days[1]
    fault = [{"kind": "bad_ohlc", "path": "/fapi/v1/klines", "symbol": "ETHUSDT", "day": bad,
              "start_minute": 600, "minutes": 1}]  # fmt: skip
    res = resources(tmp_path, symbols="BTCUSDT,ETHUSDT", sandbox_faults=json.dumps(fault))
    result = run_range(instance, res, days[0], days[-1])
    assert result.success  # blocked symbol-days are recorded; the step does not fail
    checks = _by_key(result)
    cause = f"binance_perp_klines_1m ETHUSDT {bad} binance_perp_klines_1m.quality failed"
    for check in (QUALITY, POINT_IN_TIME):
        blocked = checks[(FEATURES, check, bad)]
        assert not blocked.passed and blocked.severity == dg.AssetCheckSeverity.ERROR
        assert blocked.metadata[ERROR_SYMBOLS].value == "ETHUSDT"
        assert "blocked, not built" in (blocked.description or "")
        assert cause in (blocked.description or "") and "ohlc_violations=1" in (
            blocked.description or ""
        )
        for day in (days[0], days[2]):
            assert checks[(FEATURES, check, day)].passed, (check, day)

    lake = Lake(tmp_path / "lake")
    assert lake.days_present(FEATURES, "BTCUSDT") == [as_day(d) for d in days]
    assert lake.days_present(FEATURES, "ETHUSDT") == [as_day(days[0]), as_day(days[2])]
    # The gate's view further down: the day blocks ETH only.
    key, window = [dg.AssetKey(FEATURES)], [as_day(d) for d in days]
    assert list(check_failures(instance, key, window, symbol="ETHUSDT")) == [as_day(bad)]
    assert check_failures(instance, key, window, symbol="BTCUSDT") == {}

    meta = latest_metadata(instance, FEATURES, bad)
    assert meta["blocked_symbols"] == "ETHUSDT" and meta["symbols_built"] == 1
    # The next day is built, its look-back short of the blocked day (1m, 1h and 15m inputs).
    after = latest_metadata(instance, FEATURES, days[2])
    assert after["symbols_built"] == 2
    assert after["by_symbol"]["ETHUSDT"]["excluded_lookback_days"] == 3
    assert "excluded_lookback_days" not in after["by_symbol"]["BTCUSDT"]
    eth, btc = (_features(lake, [days[2]], s) for s in ("ETHUSDT", "BTCUSDT"))
    assert eth.height == btc.height == 24
    # 24 h returns reach into the left-out day for ETH, not for BTC.
    assert eth["ret_24h"].null_count() == 24 and btc["ret_24h"].null_count() == 0
    assert eth["ret_1h"].null_count() == 1 and eth["close"].null_count() == 0


# --- 4. a corrupt published day ----------------------------------------------------------------


def test_a_published_day_that_does_not_verify_is_left_out_and_older_values_take_over(
    built: Built, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = _copy_lake(built, tmp_path, without=())
    day, victim_day = DAYS[3], as_day(DAYS[2])  # 05-29 holds Friday's values of both series
    # DGS10: a flipped byte; DTWEXBGS: new values under the old manifest.
    flipped = lake.day_file("fred_series", "DGS10", victim_day)
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    rewritten = lake.day_file("fred_series", "DTWEXBGS", victim_day)
    tampered = pl.read_parquet(rewritten).with_columns(pl.col("value") * 100)
    tampered.write_parquet(rewritten)

    res = resources(tmp_path, sandbox_faults=json.dumps(FRED_GAP))
    result = run_range(instance, res, day, day, [FEATURES])
    assert result.success
    assert _by_key(result)[(FEATURES, QUALITY, day)].passed  # published days never block
    meta = latest_metadata(instance, FEATURES, day)
    assert meta["published_days_left_out"] == 2
    assert meta["excluded_lookback_days"] == 2
    for path in (flipped, rewritten):
        assert str(path) in meta["excluded_lookback"]
    assert "does not verify" in meta["excluded_lookback"]

    before, after = _features(built.lake, [day]), _features(lake, [day])
    published = [d for d in _days(PUBLISHED_FROM, DAYS[-1]) if d != victim_day]
    for name in FRED:
        _assert_fred_as_expected(after, name, _published(lake, "fred_series", name, published))
    assert not after["fred_dtwexbgs_value"].is_in(tampered["value"].drop_nulls()).any()
    # The bars that needed the left-out day (before 05:00, when 05-30's publication lands)
    # fall back: DTWEXBGS to Thursday's value, DGS10 to its stale one (null, with why).
    early = pl.col("ts") < datetime(2024, 5, 30, 5, tzinfo=UTC)
    fell_back = after.filter(early)
    assert fell_back.height == 4
    assert (fell_back["fred_dtwexbgs_event_time"] == datetime(2024, 5, 23, tzinfo=UTC)).all()
    assert fell_back["fred_dtwexbgs_value"].null_count() == 0
    assert fell_back["fred_dgs10_value"].null_count() == 4
    assert fell_back["fred_dgs10_null_reason"].str.starts_with("stale").all()
    fred = [c for c in after.columns if c.startswith("fred_")]
    assert not before.filter(early).select(fred).equals(fell_back.select(fred))
    # Every other column, and the later bars, are as before.
    assert before.filter(~early).equals(after.filter(~early))
    others = [c for c in after.columns if c not in fred]
    assert before.select(others).equals(after.select(others))


# --- 5. range invariance -----------------------------------------------------------------------


def test_a_day_built_alone_is_byte_identical_to_the_same_day_built_in_a_range(
    built: Built, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = _copy_lake(built, tmp_path)
    # DGS10 goes quiet after 05-09 but for a revision of 05-06's value on 05-20: inside the
    # range its newest value (published 05-09 05:00) falls out of reach on 05-28, while a
    # day from 05-29 built alone never reads it and joins the revision (stale, but shown).
    first = _published(lake, "fred_series", "DGS10", [as_day("2024-05-08")])
    revised = datetime(2024, 5, 20, 5, tzinfo=UTC)
    revision = first.filter(pl.col("event_time") == datetime(2024, 5, 6, tzinfo=UTC))
    revision = revision.with_columns(
        pl.lit(revised).cast(first.schema["ts"]).alias("ts"),
        pl.lit(revised).cast(first.schema["ts"]).alias("available_at"),
        pl.col("value") + 0.05,
        vintage_date=pl.lit(date(2024, 5, 19)),
    )
    assert revision.height == 1
    for day in _days("2024-05-10", DAYS[-1]):
        written = lake.verify_day("fred_series", "DGS10", day)
        rows = revision if day == revised.date() else pl.read_parquet(written.path).clear()
        lake.write_day("fred_series", "DGS10", day, rows, dict(written.provenance))
    res = resources(tmp_path, sandbox_faults=json.dumps(FRED_GAP))
    assert run_range(instance, res, DAYS[0], DAYS[-1], [FEATURES]).success
    ranged = _features(lake, DAYS)
    seen = ranged.group_by(partition_day_expr().alias("day")).agg(
        pl.col("fred_dgs10_event_time").drop_nulls().unique().dt.day()
    )
    assert {day: sorted(events) for day, events in seen.iter_rows()} == {
        as_day(DAYS[0]): [7],
        as_day(DAYS[1]): [7],
        as_day(DAYS[2]): [6],
        as_day(DAYS[3]): [6],
    }
    # On 05-28 the newest value is out of reach after 05:00 (19 days after its publication).
    reasons = ranged.filter(partition_day_expr() == as_day(DAYS[1]))["fred_dgs10_null_reason"]
    assert [r.split(":")[0] for r in reasons] == ["stale"] * 5 + ["nothing published yet"] * 19
    digests = {day: _sha256(lake.day_file(FEATURES, SYMBOL, as_day(day))) for day in DAYS}
    shutil.rmtree(tmp_path / "lake" / FEATURES)
    # The range read published days back to 05-08; 05-28 alone reads from 05-09, 05-29 from
    # 05-10.
    for day in (DAYS[1], DAYS[2]):
        assert run_range(instance, res, day, day, [FEATURES]).success
        assert _sha256(lake.day_file(FEATURES, SYMBOL, as_day(day))) == digests[day], day
    assert lake.days_present(FEATURES, SYMBOL) == [as_day(DAYS[1]), as_day(DAYS[2])]
    # And from the module's lake as it is: a day alone is its twin inside the range.
    other = _copy_lake(built, tmp_path / "unchanged")
    res = resources(tmp_path / "unchanged", sandbox_faults=json.dumps(FRED_GAP))
    assert run_range(instance, res, DAYS[2], DAYS[2], [FEATURES]).success
    alone, ranged_day = (
        lk.day_file(FEATURES, SYMBOL, as_day(DAYS[2])) for lk in (other, built.lake)
    )
    assert _sha256(alone) == _sha256(ranged_day)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- 6. a look-ahead is caught -----------------------------------------------------------------


def test_a_lookahead_fails_the_day_and_the_catalog_leaves_it_out(
    built: Built, tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    _copy_lake(built, tmp_path)
    leaky_day = DAYS[2]
    start, _ = day_bounds(as_day(leaky_day))
    leaky = (pl.col("ts") > start + 9 * HOUR) & (pl.col("ts") <= start + 14 * HOUR)  # 5 bars
    real = features_1h_module.build_features_1h

    def build_with_a_bug(**kwargs: Any) -> pl.DataFrame:
        frame = real(**kwargs)
        column = "fred_dtwexbgs_available_at"
        return frame.with_columns(
            pl.when(leaky).then(pl.col("ts") + HOUR).otherwise(pl.col(column)).alias(column)
        )

    monkeypatch.setattr(features_1h_module, "build_features_1h", build_with_a_bug)
    res = resources(tmp_path, sandbox_faults=json.dumps(FRED_GAP))
    result = run_range(instance, res, DAYS[1], DAYS[3], [FEATURES])
    assert result.success
    checks = _by_key(result)
    for check in (QUALITY, POINT_IN_TIME):
        bad = checks[(FEATURES, check, leaky_day)]
        assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR, check
        assert "5 row(s) use a value published after their bar" in (bad.description or "")
        assert "fred_dtwexbgs" in (bad.description or ""), (check, bad.description)
        assert bad.metadata["lookahead_rows"].value == 5
        for day in (DAYS[1], DAYS[3]):
            assert checks[(FEATURES, check, day)].passed, (check, day)
    figures = checks[(FEATURES, POINT_IN_TIME, leaky_day)].metadata
    assert figures["fred_dtwexbgs_lookahead"].value == 5

    assert build_catalog(instance, res).success
    excluded = catalog_metadata(instance)["excluded_days"]
    assert list(excluded[FEATURES]) == [f"{SYMBOL} {leaky_day}"]
    assert "features_1h.quality failed" in excluded[FEATURES][f"{SYMBOL} {leaky_day}"]
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    stamps = [ms for (ms,) in con.execute("SELECT epoch_ms(ts) FROM features_1h").fetchall()]
    viewed = {(datetime.fromtimestamp(ms / 1000, UTC) - timedelta(milliseconds=1)).date()
              for ms in stamps}  # fmt: skip
    assert viewed == {as_day(DAYS[1]), as_day(DAYS[3])} and len(stamps) == 48


# --- 7. nothing published after T changes a bar at or before T --------------------------------

CUT = datetime(2024, 5, 28, 21, 30, tzinfo=UTC)  # before Tuesday's session is published
REVISED_AT = CUT + timedelta(minutes=15)
_SERIES_KEYS = {"fred_series": (), "alphavantage_daily": (),
                "cryptoquant_flows": ("metric", "exchange", "field")}  # fmt: skip
_VALUES = {"fred_series": ["value"], "alphavantage_daily": ["open", "high", "low", "close"],
           "cryptoquant_flows": ["value"]}  # fmt: skip


def _perturb(lake: Lake, table: str, name: str, days: list[date]) -> None:
    """Every row of ``table``/``name`` published after ``CUT`` gets other values, and the
    latest observation known at ``CUT`` a revision published just after it."""
    changed = [pl.col(v) * 2 + 1 for v in _VALUES[table]]
    rows = _published(lake, table, name, days)
    known = rows.filter(pl.col("available_at") <= CUT).sort("available_at")
    keys = list(_SERIES_KEYS[table])
    newest = pl.col("event_time") == pl.col("event_time").max()
    latest = known.filter(newest.over(keys) if keys else newest)
    latest = latest.group_by(keys or ["symbol"], maintain_order=True).last()
    revision = latest.select(rows.columns).with_columns(
        pl.lit(REVISED_AT).cast(rows.schema["ts"]).alias("ts"),
        pl.lit(REVISED_AT).cast(rows.schema["ts"]).alias("available_at"),
        *changed,
    )
    if "vintage_date" in rows.columns:
        revision = revision.with_columns(vintage_date=pl.lit(CUT.date()))
    assert revision.height >= 1
    for day in [d for d in days if d >= CUT.date()]:
        written = lake.verify_day(table, name, day)
        frame = pl.read_parquet(written.path)
        late = pl.col("available_at") > CUT
        frame = frame.with_columns(pl.when(late).then(e).otherwise(pl.col(e.meta.output_name()))
                                   for e in changed)  # fmt: skip
        if day == CUT.date():
            frame = pl.concat([frame, revision.select(frame.columns).cast(frame.schema)])
        lake.write_day(table, name, day, frame, dict(written.provenance))


def test_rewriting_everything_published_after_a_cut_changes_no_bar_at_or_before_it(
    built: Built, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    lake = _copy_lake(built, tmp_path)
    published = _days(PUBLISHED_FROM, DAYS[-1])
    for table, name in sorted({(s.table, s.symbol) for s in SERIES.values()}):
        _perturb(lake, table, name, published)

    res = resources(tmp_path, sandbox_faults=json.dumps(FRED_GAP))
    result = run_range(instance, res, DAYS[0], DAYS[-1], [FEATURES])
    assert result.success
    before, after = _features(built.lake, DAYS), _features(lake, DAYS)
    upto = pl.col("ts") <= CUT
    assert before.filter(upto).height == 45
    assert before.filter(upto).equals(after.filter(upto))
    for day in DAYS:
        assert _by_key(result)[(FEATURES, POINT_IN_TIME, day)].passed, day
    # ... and the perturbation reached every vendor's columns after the cut.
    later = ~upto
    for p in ("fred_dtwexbgs_value", "fred_dgs10_available_at", "av_spy_close", "av_uup_ret_1d",
              "cq_netflow_total_value", "cq_reserve_value"):  # fmt: skip
        assert not before.filter(later)[p].equals(after.filter(later)[p]), p
