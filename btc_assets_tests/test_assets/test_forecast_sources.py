"""The forecasting sources' raw feeds end to end through Dagster, against the sandbox.

CoinAPI, FRED, Alpha Vantage and CryptoQuant: what each stores where (published tables by
``available_at``), revisions, the Alpha Vantage budget, a missing key, what CoinAPI does
not serve, vendor faults, reuse, and that no key ever leaves the process. The oracles are
the sandbox's own functions (``sandbox.fred``, ``sandbox.us_calendar``) and the
publication rules written out by hand, not the code under test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest
from dagster._serdes import serialize_value

from btc_assets.core.tables import (
    ALPHAVANTAGE_DAILY,
    COINAPI_FUNDING,
    COINAPI_PERP_1H,
    COINAPI_SPOT_1H,
    CRYPTOQUANT_FLOWS,
    FORECAST_SOURCE_TABLES,
    FRED_SERIES,
)
from btc_assets.defs.checks import QUALITY
from btc_assets.defs.forecast_resources import CoinApiResource, CryptoQuantResource
from btc_assets.lake import Lake
from btc_assets.sandbox import credentials, fred
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.sandbox.us_calendar import is_nyse_session
from btc_assets.settings import load_settings
from btc_assets.settings_forecast import CRYPTOQUANT_FIELDS_SETTING, parse_series
from btc_assets_tests.test_assets.helpers import (
    evaluations,
    failure_text,
    lake_digest,
    latest_metadata,
    resources,
    run_range,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)  # "today": every day below is closed and old
FIRST, LAST = date(2026, 11, 20), date(2026, 11, 29)  # Thanksgiving, 2026-11-26, inside
DAYS = [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
THANKSGIVING = date(2026, 11, 26)
SHORT = DAYS[:4]  # where ten days add nothing
SPAN = (SHORT[0].isoformat(), SHORT[-1].isoformat())
SYMBOL = "BTCUSDT"
FRED_IDS = ("DGS10", "DTWEXBGS")
TICKERS = ("SPY", "UUP")
COINAPI = [COINAPI_PERP_1H.name, COINAPI_SPOT_1H.name, COINAPI_FUNDING.name]
SOURCES = [*COINAPI, FRED_SERIES.name, ALPHAVANTAGE_DAILY.name, CRYPTOQUANT_FLOWS.name]
NAMES = {
    **dict.fromkeys(COINAPI, (SYMBOL,)),
    FRED_SERIES.name: FRED_IDS,
    ALPHAVANTAGE_DAILY.name: TICKERS,
    CRYPTOQUANT_FLOWS.name: ("BTC",),
}
FRED_PATH, AV_PATH, CQ_PREFIX = "/fred/series/observations", "/query", "/v1/btc/"
OHLCV_PREFIX, METRICS_PATH = "/v1/ohlcv/", "/v1/metrics/symbol/history"
SANDBOX_KEYS = {
    "FRED": credentials.SANDBOX_FRED_API_KEY,
    "Alpha Vantage": credentials.SANDBOX_ALPHAVANTAGE_KEY,
    "CoinAPI": credentials.SANDBOX_COINAPI_KEY,
    "CryptoQuant": credentials.SANDBOX_CRYPTOQUANT_TOKEN,
}
CHICAGO, NEW_YORK = ZoneInfo("America/Chicago"), ZoneInfo("America/New_York")
MS = timedelta(milliseconds=1)


@pytest.fixture(autouse=True)
def _today(pinned_clock: Callable[[datetime], None]) -> None:
    pinned_clock(NOW)  # for the assets, the clients and the sandbox's data clock alike


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, tuple[str, ...]]]:
    """Every request any sandbox transport answered: (path, status, faults fired)."""
    seen: list[tuple[str, int, tuple[str, ...]]] = []
    original = SandboxTransport._record

    def record(self: SandboxTransport, method: str, path: str, params: Any, status: int,
               fired: Any) -> None:  # fmt: skip
        original(self, method, path, params, status, fired)
        seen.append((path, status, tuple(f.kind for f in fired)))

    monkeypatch.setattr(SandboxTransport, "_record", record)
    return seen


def _sent(wire: list[tuple[str, int, tuple[str, ...]]], prefix: str) -> int:
    return sum(1 for path, _, _ in wire if path.startswith(prefix))


def _partition(moment: datetime) -> date:
    """The day whose partition holds ``moment``: (D 00:00, D+1 00:00]."""
    return (moment - MS).date()


def _fred_available(vintage: date) -> datetime:
    """The end of the vintage date on FRED's clock (US Central), in UTC (delay 0)."""
    return datetime.combine(vintage + timedelta(days=1), time(0), CHICAGO).astimezone(UTC)


def _stored(tmp_path: Path, table: str, name: str, days: list[date]) -> pl.DataFrame:
    """The verified rows of ``days``, each with the partition it is stored in."""
    read = Lake(tmp_path / "lake").read_days(table, name, days)
    assert not read.errors and not read.missing, (table, name, read.errors, read.missing)
    return pl.concat(
        [
            pl.read_parquet(w.path).with_columns(partition=pl.lit(d))
            for d, w in read.committed.items()
        ]
    )


def _provenance(tmp_path: Path, table: str, name: str, day: date) -> dict[str, Any]:
    written = Lake(tmp_path / "lake").read_days(table, name, [day]).committed[day]
    return dict(written.provenance)


def _digest(tmp_path: Path, table: str, name: str, days: list[date]) -> dict[str, str]:
    lake = Lake(tmp_path / "lake")
    return {
        path: sha
        for path, sha in lake_digest(tmp_path / "lake").items()
        if any(
            path.startswith(str(lake.day_dir(table, name, d).relative_to(lake.root))) for d in days
        )
    }


def _data_bytes(tmp_path: Path, tables: list[str]) -> dict[str, bytes]:
    """The parquet files' bytes per (table, name, day) directory (not the manifests, which
    carry the fetch time)."""
    return {
        str(p.parent.relative_to(tmp_path / "lake")): p.read_bytes()
        for table in tables
        for p in sorted((tmp_path / "lake" / table).rglob("*.parquet"))
    }


def _quality(result: dg.ExecuteInProcessResult, name: str) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        str(e.partition): e
        for e in evaluations(result)
        if e.asset_key.path[-1] == name and e.check_name == QUALITY
    }


def _with(res: dict[str, object], key: str, **changes: Any) -> dict[str, object]:
    """The same resources with one vendor's resource configured otherwise."""
    old = res[key]
    assert isinstance(old, dg.ConfigurableResource)
    fields = {name: getattr(old, name) for name in type(old).model_fields}
    return {**res, key: type(old)(**{**fields, **changes})}


def _faulty(tmp_path: Path, faults: list[dict[str, Any]], **overrides: Any) -> dict[str, object]:
    return resources(tmp_path, sandbox_faults=json.dumps(faults), symbols=SYMBOL, **overrides)


# --- 1. a range of every source ------------------------------------------------------------


def test_a_range_stores_every_table_name_and_day_by_when_it_became_known(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = resources(tmp_path, symbols=SYMBOL)
    result = run_range(instance, res, FIRST.isoformat(), LAST.isoformat(), selection=SOURCES)
    assert result.success
    lake = Lake(tmp_path / "lake")
    for table in FORECAST_SOURCE_TABLES:
        for name in NAMES[table.name]:
            read = lake.read_days(table.name, name, DAYS)
            assert sorted(read.committed) == DAYS, (table.name, name, read.missing, read.errors)
        checks = _quality(result, table.name)
        assert sorted(checks) == [d.isoformat() for d in DAYS]
        failed = {day: e.description for day, e in checks.items() if not e.passed}
        assert failed == {}, table.name

    # FRED: exactly the vintages the sandbox published whose end-of-day (Central) falls in
    # the range, each in the partition of its available_at; "." is null and missing.
    seed = load_settings().sandbox_seed
    for series in FRED_IDS:
        rows = _stored(tmp_path, FRED_SERIES.name, series, DAYS)
        assert rows.filter(pl.col("ts") != pl.col("available_at")).is_empty()
        assert rows.filter(pl.col("available_at") <= pl.col("event_time")).is_empty()
        got = {
            (r["event_time"].date(), r["vintage_date"], r["value"], r["missing"],
             r["available_at"], r["partition"])
            for r in rows.iter_rows(named=True)
        }  # fmt: skip
        expected = set()
        day = FIRST - timedelta(days=30)
        while day <= LAST:
            for v in fred.vintages(seed, series, day, NOW.date()):
                available = _fred_available(v.start)
                if FIRST <= _partition(available) <= LAST:
                    value = None if v.value == "." else float(v.value)
                    expected.add((day, v.start, value, v.value == ".", available,
                                  _partition(available)))  # fmt: skip
            day += timedelta(days=1)
        assert got == expected, series
        holidays = rows.filter(pl.col("missing"))
        # Thanksgiving is a Fed holiday: "." published the next business day, known at its end
        assert holidays["event_time"].dt.date().to_list() == [THANKSGIVING], series
        assert holidays["value"].to_list() == [None]
        assert holidays["partition"].to_list() == [date(2026, 11, 28)]
        assert rows.filter(~pl.col("missing"))["value"].null_count() == 0
    fred_checks = _quality(result, FRED_SERIES.name)
    assert fred_checks["2026-11-28"].passed  # the day holding the "." rows is clean

    # CryptoQuant: each UTC day's values known at the end of the day + 3 h.
    flows = _stored(tmp_path, CRYPTOQUANT_FLOWS.name, "BTC", DAYS)
    assert flows.height == 12 * len(DAYS)  # the five default endpoints' fields, every day
    for r in (
        flows.select("event_time", "available_at", "ts", "partition").unique().iter_rows(named=True)
    ):
        assert r["available_at"] == r["ts"] == r["event_time"] + timedelta(days=1, hours=3)
        assert r["partition"] == r["available_at"].date()

    # CoinAPI: 24 hourly bars per day, labelled by their close, inside the day's interval.
    for table in COINAPI:
        bars = _stored(tmp_path, table, SYMBOL, DAYS)
        assert bars.height == 24 * len(DAYS)
        assert bars.filter((pl.col("ts") - MS).dt.date() != pl.col("partition")).is_empty()


# --- 2. a FRED revision --------------------------------------------------------------------


def _a_revision(seed: int) -> tuple[str, date, fred.Vintage, fred.Vintage]:
    """A revised observation (by the sandbox's own world) whose first and revised vintages
    are both known within ten days of each other, not long before NOW."""
    for series in FRED_IDS:
        day = NOW.date() - timedelta(days=60)
        while day < NOW.date() - timedelta(days=14):
            found = fred.vintages(seed, series, day, NOW.date())
            if len(found) == 2:
                first, revised = found
                span = _partition(_fred_available(revised.start)) - _partition(
                    _fred_available(first.start)
                )
                if span <= timedelta(days=9):
                    return series, day, first, revised
            day += timedelta(days=1)
    raise AssertionError("the sandbox revised nothing in the window searched")


def test_a_fred_revision_is_stored_in_the_partition_of_its_own_vintage(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    seed = load_settings().sandbox_seed
    series, observed, first, revised = _a_revision(seed)
    assert fred.revision_date(observed) == revised.start and first.value != revised.value
    known, known_again = _fred_available(first.start), _fred_available(revised.start)
    start, end = _partition(known), _partition(known_again)
    assert start < end
    res = resources(tmp_path, symbols=SYMBOL)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    assert run_range(instance, res, start.isoformat(), end.isoformat(), [FRED_SERIES.name]).success
    rows = _stored(tmp_path, FRED_SERIES.name, series, days)
    of_day = rows.filter(pl.col("event_time").dt.date() == observed).sort("available_at")
    event_time = datetime.combine(observed, time(0), UTC)
    stored = of_day.select("partition", "available_at", "event_time", "value", "vintage_date")
    assert stored.rows() == [
        (start, known, event_time, float(first.value), first.start),
        (end, known_again, event_time, float(revised.value), revised.start),
    ]  # fmt: skip
    # ... and no partition in between restates it
    assert of_day.height == 2


# --- 3. Alpha Vantage: the session clock and the daily budget ------------------------------


def test_alphavantage_sessions_by_close_and_a_spent_budget_asks_nothing(
    tmp_path: Path, instance: dg.DagsterInstance, wire: list[Any]
) -> None:
    res = resources(tmp_path, symbols=SYMBOL)
    first = run_range(instance, res, FIRST.isoformat(), LAST.isoformat(), [ALPHAVANTAGE_DAILY.name])
    assert first.success and _sent(wire, AV_PATH) == len(TICKERS)  # one request per ticker
    sessions = [d for d in DAYS if is_nyse_session(d)]
    assert THANKSGIVING not in sessions and date(2026, 11, 27) in sessions
    for ticker in TICKERS:
        rows = _stored(tmp_path, ALPHAVANTAGE_DAILY.name, ticker, DAYS)
        assert rows["session_date"].to_list() == sessions  # no weekend, no NYSE holiday
        for r in rows.iter_rows(named=True):
            close = datetime.combine(r["session_date"], time(16), NEW_YORK).astimezone(UTC)
            assert r["available_at"] == r["ts"] == close + timedelta(hours=2)
            assert r["event_time"] == datetime.combine(r["session_date"], time(0), UTC)
            assert r["partition"] == _partition(r["available_at"]) == r["session_date"]

    # The budget file says how many requests today's count holds; a limit of exactly that
    # leaves none, so a forced re-run of the range must not ask.
    budget = json.loads((tmp_path / "state" / "alphavantage_sandbox.json").read_text())
    used = budget["used"]
    assert used == len(TICKERS)
    before = {**lake_digest(tmp_path / "lake"), **lake_digest(tmp_path / "state")}
    spent = resources(
        tmp_path, symbols=SYMBOL,
        forecast=replace(load_settings().forecast, alphavantage_daily_limit=used),
    )  # fmt: skip
    asked = len(wire)
    again = run_range(
        instance, spent, FIRST.isoformat(), LAST.isoformat(), [ALPHAVANTAGE_DAILY.name], force=True
    )
    assert again.success
    assert len(wire) == asked  # nothing on the wire
    after = {**lake_digest(tmp_path / "lake"), **lake_digest(tmp_path / "state")}
    assert after == before  # no file touched, the budget file included
    for day in DAYS:
        meta = latest_metadata(instance, ALPHAVANTAGE_DAILY.name, day)
        assert meta["source"] == "kept" and meta["run_http_requests"] == 0
        for ticker in TICKERS:
            why = meta["by_symbol"][ticker]["not_fetched"]
            assert "budget" in why and f"{used} of {used}" in why, why
    assert all(e.passed for e in _quality(again, ALPHAVANTAGE_DAILY.name).values())


# --- 4. a vendor without its key -----------------------------------------------------------


def test_without_a_key_nothing_is_asked_stored_days_stay_and_new_ones_say_why(
    tmp_path: Path, instance: dg.DagsterInstance, wire: list[Any]
) -> None:
    res = resources(tmp_path, symbols=SYMBOL)
    days = DAYS[:6]
    stored, never = days[:3], days[3:]
    assert run_range(instance, res, FIRST.isoformat(), stored[-1].isoformat(),
                     [CRYPTOQUANT_FLOWS.name]).success  # fmt: skip
    before = _digest(tmp_path, CRYPTOQUANT_FLOWS.name, "BTC", stored)
    asked = len(wire)

    keyless = _with(res, "cryptoquant", api_key=None)
    assert isinstance(keyless["cryptoquant"], CryptoQuantResource)
    assert not keyless["cryptoquant"].has_key
    result = run_range(instance, keyless, FIRST.isoformat(), days[-1].isoformat(),
                       [CRYPTOQUANT_FLOWS.name], force=True)  # fmt: skip
    assert result.success
    assert len(wire) == asked  # no request at all
    assert _digest(tmp_path, CRYPTOQUANT_FLOWS.name, "BTC", stored) == before
    for day in stored:
        meta = latest_metadata(instance, CRYPTOQUANT_FLOWS.name, day)
        assert meta["source"] == "kept" and "CRYPTOQUANT_API_KEY" in meta["not_fetched"]
    for day in never:
        provenance = _provenance(tmp_path, CRYPTOQUANT_FLOWS.name, "BTC", day)
        assert provenance["rows"] == 0 and "CRYPTOQUANT_API_KEY" in provenance["unavailable"]
        meta = latest_metadata(instance, CRYPTOQUANT_FLOWS.name, day)
        assert "CRYPTOQUANT_API_KEY is not set" in meta["unavailable"]
    checks = _quality(result, CRYPTOQUANT_FLOWS.name)
    assert sorted(checks) == [d.isoformat() for d in days]
    assert all(e.severity != dg.AssetCheckSeverity.ERROR or e.passed for e in checks.values())
    assert not any(k.startswith("btc_assets/blocked.") for k in result.dagster_run.tags)

    # With the key back, the days never asked are asked (not reused as if whole).
    back = run_range(instance, res, FIRST.isoformat(), days[-1].isoformat(),
                     [CRYPTOQUANT_FLOWS.name])  # fmt: skip
    assert back.success and _sent(wire, CQ_PREFIX) > asked
    for day in never:
        assert latest_metadata(instance, CRYPTOQUANT_FLOWS.name, day)["source"] == "vendor"
        assert "unavailable" not in _provenance(tmp_path, CRYPTOQUANT_FLOWS.name, "BTC", day)
    assert _stored(tmp_path, CRYPTOQUANT_FLOWS.name, "BTC", never).height == 12 * len(never)


# --- 5. CoinAPI: not served, and down -------------------------------------------------------


def test_coinapi_data_not_in_the_plan_is_stored_empty_as_not_served(
    tmp_path: Path, instance: dg.DagsterInstance, wire: list[Any]
) -> None:
    """The OHLCV-only key: CoinAPI answers the metrics endpoint 403 (its plan lacks it)."""
    res = _with(resources(tmp_path, symbols=SYMBOL), "coinapi",
                api_key=credentials.SANDBOX_COINAPI_OHLCV_ONLY_KEY)  # fmt: skip
    assert isinstance(res["coinapi"], CoinApiResource)
    result = run_range(instance, res, *SPAN, COINAPI)
    assert result.success
    assert _sent(wire, METRICS_PATH) == 1  # asked once, never again within the run
    for day in SHORT:
        provenance = _provenance(tmp_path, COINAPI_FUNDING.name, SYMBOL, day)
        assert provenance["rows"] == 0 and "not served by CoinAPI" in provenance["unavailable"]
        assert (
            "not served by CoinAPI"
            in latest_metadata(instance, COINAPI_FUNDING.name, day)["unavailable"]
        )
    funding = _quality(result, COINAPI_FUNDING.name)
    assert sorted(funding) == [d.isoformat() for d in SHORT]
    assert all(e.severity == dg.AssetCheckSeverity.WARN for e in funding.values())  # not ERROR
    assert not any(k.startswith("btc_assets/blocked.") for k in result.dagster_run.tags)
    # the bars the plan does include are all there
    assert _stored(tmp_path, COINAPI_PERP_1H.name, SYMBOL, SHORT).height == 24 * len(SHORT)


def test_coinapi_down_fails_its_step_naming_the_endpoint_and_keeps_the_lake(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    good = resources(tmp_path, symbols=SYMBOL)
    assert run_range(instance, good, *SPAN, COINAPI).success
    before = lake_digest(tmp_path / "lake")
    down = _with(_faulty(tmp_path, [{"kind": "500", "path": OHLCV_PREFIX + "*", "count": -1}]),
                 "coinapi", max_retries=1)  # fmt: skip
    bars = COINAPI[:2]  # the two OHLCV tables (the metrics endpoint is not faulted)
    result = run_range(instance, down, *SPAN, bars, force=True)
    assert not result.success
    assert {e.step_key for e in result.all_events if e.is_step_failure} == set(bars)
    text = failure_text(result)
    assert "HTTP 500" in text and "gave up after 2 attempts" in text
    assert "coinapi GET /v1/ohlcv/BINANCEFTS_PERP_BTC_USDT/history" in text
    assert "coinapi GET /v1/ohlcv/BINANCE_SPOT_BTC_USDT/history" in text
    assert lake_digest(tmp_path / "lake") == before
    assert instance.get_materialized_partitions(dg.AssetKey(COINAPI_PERP_1H.name)) == {
        d.isoformat() for d in SHORT
    }  # only the good run's


# --- 6. faults through the assets -----------------------------------------------------------

PUBLISHED = [FRED_SERIES.name, CRYPTOQUANT_FLOWS.name]
RECOVERABLE = [
    {"kind": "429", "path": FRED_PATH, "count": 1, "retry_after": 1},
    {"kind": "500", "path": FRED_PATH, "count": 1, "skip": 1},
    {"kind": "429", "path": CQ_PREFIX + "*", "count": 1, "retry_after": 1},
    {"kind": "503", "path": CQ_PREFIX + "*", "count": 1, "skip": 2},
]


def test_rate_limits_and_passing_5xx_are_absorbed_to_the_same_rows(
    tmp_path: Path, instance: dg.DagsterInstance, wire: list[Any]
) -> None:
    span = SPAN
    clean = resources(tmp_path / "clean", symbols=SYMBOL)
    assert run_range(instance, clean, *span, PUBLISHED).success
    requests = len(wire)
    faulty = _faulty(tmp_path / "faulty", RECOVERABLE)
    result = run_range(instance, faulty, *span, PUBLISHED)
    assert result.success
    fired = [kinds for _, _, kinds in wire[requests:] if kinds]
    # FRED builds one client (one fault plan) per series; CryptoQuant one for the asset.
    assert sorted(k for kinds in fired for k in kinds) == sorted(
        ["429", "500"] * len(FRED_IDS) + ["429", "503"]
    )
    assert len(wire) - requests == requests + len(fired)  # each failed attempt retried once
    assert _data_bytes(tmp_path / "faulty", PUBLISHED) == _data_bytes(tmp_path / "clean", PUBLISHED)


BROKEN = {
    # an error inside HTTP 200: FRED's error body, CryptoQuant's status envelope
    "error in 200": [
        {"kind": "error200", "path": FRED_PATH, "count": -1,
         "msg": f"Bad Request.  Variable api_key={credentials.SANDBOX_FRED_API_KEY} is bad."},
        {"kind": "error200", "path": CQ_PREFIX + "*", "count": -1, "code": 500,
         "msg": f"internal error for token {credentials.SANDBOX_CRYPTOQUANT_TOKEN}"},
    ],
    "malformed JSON": [
        {"kind": "truncated", "path": FRED_PATH, "count": -1},
        {"kind": "truncated", "path": CQ_PREFIX + "*", "count": -1},
    ],
}  # fmt: skip


def test_a_broken_answer_fails_the_step_naming_the_vendor_and_keeps_the_lake(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    assert run_range(instance, resources(tmp_path, symbols=SYMBOL), *SPAN, PUBLISHED).success
    before = lake_digest(tmp_path / "lake")
    for broken, faults in BROKEN.items():
        res = _faulty(tmp_path, faults)
        res = _with(_with(res, "fred", max_retries=1), "cryptoquant", max_retries=1)
        result = run_range(instance, res, *SPAN, PUBLISHED, force=True)
        assert not result.success
        failed = {e.step_key for e in result.all_events if e.is_step_failure}
        assert failed == set(PUBLISHED), broken
        text = failure_text(result)
        assert f"fred GET {FRED_PATH}" in text and f"cryptoquant GET {CQ_PREFIX}" in text
        if broken == "malformed JSON":
            assert text.count("malformed JSON") >= 2
        else:  # the echoed key masked, the rest of the vendor's words kept
            assert "HTTP 200 code 400: Bad Request.  Variable api_key=*** is bad." in text
            assert "HTTP 200 code 500" in text and "internal error for token ***" in text
        assert lake_digest(tmp_path / "lake") == before, broken
    _no_key_anywhere(tmp_path, instance)


def test_a_cryptoquant_endpoint_outside_the_plan_is_left_out_and_named(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """The basic plan has no MPI (403): the other endpoints are stored, the day says which
    endpoint was refused."""
    fields = parse_series("cryptoquant", "netflow_total,mpi", CRYPTOQUANT_FIELDS_SETTING)
    res = resources(
        tmp_path,
        symbols=SYMBOL,
        forecast=replace(load_settings().forecast, cryptoquant_fields=fields),
    )
    res = _with(res, "cryptoquant", api_key=credentials.SANDBOX_CRYPTOQUANT_BASIC_TOKEN)
    span = (DAYS[0].isoformat(), DAYS[2].isoformat())
    assert run_range(instance, res, *span, [CRYPTOQUANT_FLOWS.name]).success
    rows = _stored(tmp_path, CRYPTOQUANT_FLOWS.name, "BTC", DAYS[:3])
    assert rows["field"].to_list() == ["netflow_total"] * 3
    refused = latest_metadata(instance, CRYPTOQUANT_FLOWS.name, DAYS[1])["refused_endpoints"]
    assert refused.startswith("mpi: ") and "not in this token's CryptoQuant plan" in refused


def test_a_cryptoquant_path_that_is_not_there_fails_instead_of_storing_empty_days(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A 404 (here: a base URL with a wrong path) is not a plan refusal: days stored empty
    as "complete" would be reused as they are, a silent hole."""
    span = (DAYS[0].isoformat(), DAYS[2].isoformat())
    res = resources(tmp_path, symbols=SYMBOL)
    assert run_range(instance, res, *span, [CRYPTOQUANT_FLOWS.name]).success
    before = lake_digest(tmp_path / "lake")
    cryptoquant = res["cryptoquant"]
    assert isinstance(cryptoquant, CryptoQuantResource)
    wrong = _with(res, "cryptoquant", base_url=cryptoquant.base_url + "/api")
    result = run_range(instance, wrong, *span, [CRYPTOQUANT_FLOWS.name], force=True)
    assert not result.success
    text = failure_text(result)
    assert "HTTP 404" in text and "CRYPTOQUANT_BASE_URL" in text
    assert lake_digest(tmp_path / "lake") == before


# --- 7. reuse ---------------------------------------------------------------------------------


def test_closed_old_days_are_reused_without_a_request(
    tmp_path: Path, instance: dg.DagsterInstance, wire: list[Any]
) -> None:
    res = resources(tmp_path, symbols=SYMBOL)
    assert run_range(instance, res, *SPAN, PUBLISHED).success
    assert _sent(wire, FRED_PATH) == len(FRED_IDS) and _sent(wire, CQ_PREFIX) == 5
    before, asked = lake_digest(tmp_path / "lake"), len(wire)
    # Any request now would fail the run: none may be made.
    refusing = _faulty(tmp_path, [{"kind": "500", "path": "*", "count": -1}])
    again = run_range(instance, refusing, *SPAN, PUBLISHED)
    assert again.success and len(wire) == asked
    assert lake_digest(tmp_path / "lake") == before
    for name in PUBLISHED:
        for day in SHORT:
            meta = latest_metadata(instance, name, day)
            assert meta["source"] == "reused" and meta["run_http_requests"] == 0, (name, day)


# --- 8. secrets ---------------------------------------------------------------------------------


def _no_key_anywhere(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """No sandbox key in any event of any run (messages, metadata, check metadata, errors)
    nor in any file under the data dir (the lake, the budget, Dagster's own storage)."""
    events = [
        serialize_value(entry)
        for run in instance.get_runs()
        for entry in instance.all_logs(run.run_id)
    ]
    assert events
    text = "\n".join(events)
    for vendor, key in SANDBOX_KEYS.items():
        assert key not in text, f"the {vendor} key is in the event log"
    leaks = {
        str(path): vendor
        for path in tmp_path.rglob("*")
        if path.is_file()
        for vendor, key in SANDBOX_KEYS.items()
        if key.encode() in path.read_bytes()
    }
    assert leaks == {}


def test_no_key_appears_in_events_metadata_or_files(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    res = resources(tmp_path, symbols=SYMBOL)
    span = (FIRST.isoformat(), FIRST.isoformat())
    assert run_range(instance, res, *span, SOURCES).success
    # Vendors that echo the key back in their error text (FRED's and CryptoQuant's are in
    # test_a_broken_answer_fails_the_step_naming_the_vendor_and_keeps_the_lake).
    echoed = [
        {"kind": "error200", "path": AV_PATH, "count": -1, "code": "Error Message",
         "msg": f"the parameter apikey is invalid: {credentials.SANDBOX_ALPHAVANTAGE_KEY}"},
        {"kind": "500", "path": OHLCV_PREFIX + "*", "count": -1,
         "msg": f"no service for key {credentials.SANDBOX_COINAPI_KEY}"},
    ]  # fmt: skip
    broken = _with(_faulty(tmp_path, echoed), "coinapi", max_retries=1)
    failed = run_range(instance, broken, *span, [ALPHAVANTAGE_DAILY.name, *COINAPI[:1]],
                       force=True)  # fmt: skip
    text = failure_text(failed)
    assert "Error Message: the parameter apikey is invalid: *** --" in text  # masked, not lost
    assert "HTTP 500: no service for key *** --" in text
    _no_key_anywhere(tmp_path, instance)
