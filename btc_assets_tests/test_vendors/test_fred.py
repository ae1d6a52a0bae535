"""FredClient: the real DTWEXBGS file parsed, "." as null + missing, paging, vintages (a revised
value only from its vintage date, nothing after now), keys never shown, FRED's refusals and
the sandbox's faults in process and over a real loopback socket."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import polars as pl
import pytest

from btc_assets.core.schema import FRED_OBSERVATION_SCHEMA
from btc_assets.sandbox.credentials import SANDBOX_FRED_API_KEY
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.sandbox.us_calendar import is_fed_business_day
from btc_assets.vendors.errors import (
    VendorConfigError,
    VendorError,
    VendorRateLimited,
    VendorRefused,
    VendorResponseError,
    VendorUnavailable,
)
from btc_assets.vendors.fred import (
    OBSERVATIONS,
    OPEN_END,
    FredClient,
    FredKeyMissing,
    FredKeyRejected,
    FredSeriesMissing,
)
from btc_assets_tests.fixtures import path as fixture
from btc_assets_tests.test_vendors.helpers import FakeClock, scripted

KEY = SANDBOX_FRED_API_KEY
TODAY = date(2025, 3, 14)  # a Friday
START, END = date(2024, 1, 1), date(2024, 12, 31)
URL = "http://sandbox.fred.invalid"
SHOWN = f"fred GET {OBSERVATIONS} {{series_id=DTWEXBGS, api_key=***, file_type=json,"


def ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, 12, tzinfo=UTC).timestamp() * 1000)


def in_process(sandbox: SandboxTransport | None = None, **kw: Any) -> FredClient:
    key = kw.pop("api_key", KEY)
    return FredClient(URL, key, transport=sandbox or SandboxTransport(now_ms=ms(TODAY)), **kw)


@contextmanager
def served(
    faults: list[dict[str, Any]], key: str | None = KEY, **client_kw: Any
) -> Iterator[tuple[FredClient, SandboxTransport, list[float]]]:
    """The sandbox on a loopback socket; the client and the sandbox's rate windows on one
    fake clock, 30 s before a minute ends. A short timeout only where one is injected."""
    clock = FakeClock(start=1_000_050.0)
    sandbox = SandboxTransport(now_ms=ms(TODAY), faults=json.dumps(faults), clock=clock.time)
    timeout = 0.3 if any(f["kind"] == "timeout" for f in faults) else 10.0
    with serve_sandbox(transport=sandbox) as url:
        options = {"timeout": timeout, "max_retries": 3, "sleep": clock.sleep,
                   "clock": clock.time, **client_kw}  # fmt: skip
        with FredClient(url, key, **options) as client:
            yield client, sandbox, clock.sleeps


@pytest.fixture(scope="module")
def clean() -> pl.DataFrame:
    return in_process().observations("DTWEXBGS", START, END)


# --- the real file ---------------------------------------------------------------------


def fred_from_fixture() -> tuple[httpx.MockTransport, list[httpx.Request], list[list[str]]]:
    """FRED answering from the real DTWEXBGS file: an empty cell is FRED's "." in JSON; the
    rows of the default window carry the day of the request (here 2025-12-29)."""
    with fixture("fred/DTWEXBGS_2024-06-03_2025-12-26.csv").open() as handle:
        table = list(csv.reader(handle))[1:]
    obs = [{"realtime_start": "2025-12-29", "realtime_end": "2025-12-29", "date": d,
            "value": v or "."} for d, v in table]  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        q = request.url.params
        offset, limit = int(q["offset"]), int(q["limit"])
        return httpx.Response(200, json={
            "realtime_start": "2025-12-29", "realtime_end": "2025-12-29",
            "observation_start": q["observation_start"], "observation_end": q["observation_end"],
            "units": "lin", "output_type": 1, "file_type": "json", "order_by": "observation_date",
            "sort_order": "asc", "count": len(obs), "offset": offset, "limit": limit,
            "observations": obs[offset : offset + limit],
        })  # fmt: skip

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return httpx.MockTransport(handler), seen, table


def test_the_real_file_parses_with_its_holidays_as_missing() -> None:
    transport, seen, table = fred_from_fixture()
    client = FredClient("https://api.stlouisfed.org", "a" * 32, transport=transport,
                        page_limit=100)  # fmt: skip
    frame = client.observations("DTWEXBGS", date(2024, 6, 3), date(2025, 12, 26))
    assert frame.schema == pl.Schema(FRED_OBSERVATION_SCHEMA)
    assert len(seen) == 5  # 410 rows in pages of 100
    assert [int(r.url.params["offset"]) for r in seen] == [0, 100, 200, 300, 400]
    query = seen[0].url.params
    assert query["file_type"] == "json" and query["series_id"] == "DTWEXBGS"
    assert (query["observation_start"], query["observation_end"]) == ("2024-06-03", "2025-12-26")
    assert frame.height == len(table) == 410
    assert frame["date"].to_list() == [date.fromisoformat(d) for d, _ in table]
    assert frame["value"].to_list() == [float(v) if v else None for _, v in table]
    assert frame.row(0, named=True)["value"] == 122.7156
    missing = set(frame.filter("missing")["date"].to_list())
    assert missing == {date.fromisoformat(d) for d, v in table if not v} and len(missing) == 18
    assert (frame["value"].is_null() == frame["missing"]).all()
    # The file's blanks are exactly the Fed's weekday holidays (Juneteenth, Columbus Day and
    # Veterans Day among them), and it has no weekend rows: the sandbox's calendar agrees.
    assert all(d.weekday() < 5 for d in frame["date"])
    assert missing == {d for d in frame["date"] if not is_fed_business_day(d)}
    assert {date(2024, 6, 19), date(2024, 10, 14), date(2024, 11, 11)} <= missing
    assert frame["realtime_start"].unique().to_list() == [date(2025, 12, 29)]


# --- the contract against the sandbox --------------------------------------------------


def test_current_vintage_has_dot_days_as_null_and_missing(clean: pl.DataFrame) -> None:
    assert clean.schema == pl.Schema(FRED_OBSERVATION_SCHEMA)
    assert clean.height == 262 and clean["date"].is_sorted() and clean["date"].is_unique().all()
    assert clean["series_id"].unique().to_list() == ["DTWEXBGS"]
    holidays = clean.filter("missing")
    assert holidays["value"].null_count() == holidays.height == 11  # the Fed's 2024 weekdays off
    assert not any(is_fed_business_day(d) for d in holidays["date"])
    assert clean.filter(~pl.col("missing"))["value"].null_count() == 0
    assert 90 < clean["value"].min() < clean["value"].max() < 150  # type: ignore[operator]
    # FRED's default window is today: every row is stamped today..today
    assert set(clean["realtime_start"]) == set(clean["realtime_end"]) == {TODAY}


def test_pages_follow_offset_until_count(clean: pl.DataFrame) -> None:
    sandbox = SandboxTransport(now_ms=ms(TODAY))
    frame = in_process(sandbox, page_limit=50).observations("DTWEXBGS", START, END)
    assert frame.equals(clean)
    assert [r.params["offset"] for r in sandbox.requests] == ["0", "50", "100", "150", "200", "250"]
    assert {r.params["limit"] for r in sandbox.requests} == {"50"}
    one = SandboxTransport(now_ms=ms(TODAY))
    in_process(one).observations("DTWEXBGS", date(2006, 1, 1), TODAY)
    assert one.count() == 1  # 20 years fit FRED's 100000-row page


def test_a_count_that_moves_while_paging_starts_over() -> None:
    """FRED publishes between two pages: the rows may have shifted, so page again once."""
    days = iter([ms(TODAY), ms(TODAY + timedelta(days=3))])
    last = [ms(TODAY)]

    def now() -> int:
        last[0] = next(days, last[0])
        return last[0]

    sandbox = SandboxTransport(now_ms=now)
    frame = in_process(sandbox, page_limit=20).observations("DGS10", date(2025, 2, 1), TODAY)
    later = in_process(SandboxTransport(now_ms=ms(TODAY + timedelta(days=3))))
    assert frame.equals(later.observations("DGS10", date(2025, 2, 1), TODAY))
    assert frame["date"].max() == TODAY  # Friday's value, published on Monday
    assert [r.params["offset"] for r in sandbox.requests] == ["0", "20", "0", "20"]


# --- vintages --------------------------------------------------------------------------


def revised_date(client: FredClient) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The first revised observation of 2024 H2 (its two rows) and all rows seen."""
    every = client.vintages("DTWEXBGS", date(2024, 7, 1), END, date(2024, 6, 1), OPEN_END)
    twice = every.filter(pl.col("date").is_duplicated())
    return twice.filter(pl.col("date") == twice["date"].min()), every


def test_a_revised_value_appears_only_from_its_vintage_date() -> None:
    pair, every = revised_date(in_process())
    day = pair["date"][0]
    (old, new) = pair.sort("realtime_start").iter_rows(named=True)
    published = day + timedelta(days=1)
    while not is_fed_business_day(published):
        published += timedelta(days=1)
    assert old["realtime_start"] == published  # first known the next business day
    assert old["realtime_end"] == new["realtime_start"] - timedelta(days=1)
    assert new["realtime_end"] == OPEN_END and old["value"] != new["value"]
    assert (new["realtime_start"] - published).days >= 7  # a week later
    assert every.filter(pl.col("date") != day)["realtime_end"].to_list().count(OPEN_END) > 100
    # as of the day before the revision the old value is current, from it the new one;
    # before its first publication the date does not exist at all
    for as_of, value in ((published - timedelta(days=1), None),
                         (new["realtime_start"] - timedelta(days=1), old["value"]),
                         (new["realtime_start"], new["value"])):  # fmt: skip
        current = in_process(SandboxTransport(now_ms=ms(as_of))).observations("DTWEXBGS", day, day)
        assert current["value"].to_list() == ([] if value is None else [value]), as_of
        window = in_process().vintages("DTWEXBGS", day, day, as_of, as_of)
        assert window["value"].to_list() == ([] if value is None else [value]), as_of


def test_nothing_published_after_now_is_served() -> None:
    pair, _ = revised_date(in_process())
    day, revision = pair["date"][0], pair["realtime_start"].max()
    now = revision - timedelta(days=1)
    before = in_process(SandboxTransport(now_ms=ms(now)))
    every = before.vintages("DTWEXBGS", date(2024, 7, 1), TODAY, date(2024, 6, 1), OPEN_END)
    assert every["realtime_start"].max() <= now and every["date"].max() < now  # type: ignore[operator]
    row = every.filter(pl.col("date") == day)
    # the revision does not exist yet, and its date does not leak as an end to today's value
    assert row.height == 1 and row["realtime_end"].to_list() == [OPEN_END]
    assert row["value"].to_list() == [pair["value"][0]]


# --- keys and refusals -----------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "  "])
def test_missing_key_fails_before_any_request(key: str | None) -> None:
    sandbox = SandboxTransport(now_ms=ms(TODAY))
    with pytest.raises(FredKeyMissing) as err:
        in_process(sandbox, api_key=key).observations("DTWEXBGS", START, END)
    assert sandbox.count() == 0 and isinstance(err.value, VendorConfigError)
    assert "set FRED_API_KEY" in str(err.value)


@pytest.mark.parametrize("wrong", ["0123456789abcdef0123456789abcdef", "Not-A-Fred-Key-42"])
def test_wrong_key_names_the_setting_never_the_key(
    wrong: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with served([], key=wrong) as (client, sandbox, sleeps), pytest.raises(FredKeyRejected) as err:
        client.observations("DTWEXBGS", START, END)
    text = str(err.value) + repr(err.value.args) + repr(client)
    assert wrong not in text and "FRED_API_KEY" in text and "api_key=***" in text
    assert "HTTP 400 code 400: Bad Request.  The value for variable api_key is not" in text
    assert isinstance(err.value, VendorConfigError) and not isinstance(err.value, VendorRefused)
    assert sandbox.count() == 1 and sleeps == []  # asking again gives the same answer
    # What this side logs (the vendor layer, httpx, httpcore) never holds the key; the
    # sandbox server's own request log plays FRED's side of the wire and is left out.
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("btc_assets.sandbox")]
    assert any("api_key=***" in line for line in ours) and not any(wrong in x for x in ours)


def test_the_key_is_masked_in_every_log_of_a_good_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    in_process().observations("DTWEXBGS", START, date(2024, 1, 31))
    assert KEY not in caplog.text and "api_key=***" in caplog.text  # httpx's request line
    summary = "fred DTWEXBGS [2024-01-01, 2024-01-31]: 23 rows (2 missing '.') in 1 request(s)"
    assert summary in caplog.text  # New Year's Day and MLK Day


def test_unknown_series_is_refused_at_once() -> None:
    with served([]) as (client, sandbox, sleeps), pytest.raises(FredSeriesMissing) as err:
        client.observations("NOSUCHSERIES", START, END)
    assert isinstance(err.value, VendorRefused) and sandbox.count() == 1 and sleeps == []
    assert "HTTP 400 code 400: Bad Request.  The series does not exist." in str(err.value)
    assert "FRED has no series NOSUCHSERIES" in str(err.value)


def test_a_404_without_freds_body_is_a_wrong_host_not_a_refusal() -> None:
    # A refusal is stored as an empty day and reused; a path the host does not serve (a
    # wrong FRED_BASE_URL) must fail instead, naming the setting.
    fault = {"kind": "404", "path": OBSERVATIONS}
    with served([fault]) as (client, sandbox, _), pytest.raises(VendorError) as err:
        client.observations("DTWEXBGS", START, END)
    assert not isinstance(err.value, FredSeriesMissing)
    assert sandbox.count() == 1 and "HTTP 404" in str(err.value)
    assert "not served at this host" in str(err.value) and "FRED_BASE_URL" in str(err.value)


def test_bad_arguments_fail_before_any_request() -> None:
    sandbox = SandboxTransport(now_ms=ms(TODAY))
    client = in_process(sandbox)
    with pytest.raises(ValueError, match="observation window"):
        client.observations("DTWEXBGS", END, START)
    with pytest.raises(ValueError, match="realtime window"):
        client.vintages("DTWEXBGS", START, END, TODAY, START)
    with pytest.raises(VendorConfigError, match="page_limit"):
        in_process(sandbox, page_limit=100_001)
    with pytest.raises(VendorConfigError, match="FRED_BASE_URL"):
        FredClient("", KEY)
    assert sandbox.count() == 0


# --- faults ----------------------------------------------------------------------------


RECOVERS = [
    {"kind": "429", "path": OBSERVATIONS, "count": 1},
    {"kind": "429", "path": OBSERVATIONS, "count": 2, "retry_after": 2},
    {"kind": "500", "path": OBSERVATIONS, "count": 2},
    {"kind": "503", "path": OBSERVATIONS, "count": 1},
    {"kind": "error200", "path": OBSERVATIONS, "code": 423, "msg": "Locked.", "count": 2},
    {"kind": "timeout", "path": OBSERVATIONS, "count": 1, "delay": 0.6},
    {"kind": "reset", "path": OBSERVATIONS, "count": 2},
    {"kind": "truncated", "path": OBSERVATIONS, "count": 1},
    {"kind": "empty", "path": OBSERVATIONS, "count": 1},
    {"kind": "duplicates", "path": OBSERVATIONS, "count": -1},
    {"kind": "out_of_order", "path": OBSERVATIONS, "count": -1},
    {"kind": "extra_field", "path": OBSERVATIONS, "count": -1},
]


@pytest.mark.parametrize("fault", RECOVERS, ids=lambda f: f"{f['kind']}{f.get('code', '')}")
def test_fault_is_absorbed_to_the_clean_answer(clean: pl.DataFrame, fault: dict[str, Any]) -> None:
    with served([fault]) as (client, sandbox, sleeps):
        frame = client.observations("DTWEXBGS", START, END)
    assert frame.equals(clean) and sandbox.faults.fired(fault["kind"]) >= 1
    if fault["count"] != -1:  # the failed attempts were really sent again
        assert client.request_count == sandbox.count() == 1 + fault["count"]
    if "retry_after" in fault:
        assert sleeps == [2.0, 2.0]
    elif fault["kind"] == "429":  # FRED names no wait: the next minute's window
        assert sleeps == [pytest.approx(30.05)]


def test_paged_duplicates_do_not_skip_a_row(clean: pl.DataFrame) -> None:
    fault = {"kind": "duplicates", "path": OBSERVATIONS, "count": -1}
    sandbox = SandboxTransport(now_ms=ms(TODAY), faults=json.dumps([fault]))
    assert in_process(sandbox, page_limit=50).observations("DTWEXBGS", START, END).equals(clean)


FAILS = [
    ({"kind": "429", "path": OBSERVATIONS, "count": -1, "retry_after": 1}, VendorRateLimited,
     "HTTP 429 code 429: Too Many Requests.  Exceeded Rate Limit -- gave up after 4 attempts"),
    ({"kind": "500", "path": OBSERVATIONS, "count": -1}, VendorUnavailable,
     "HTTP 500 code 500: Internal Server Error. -- gave up after 4 attempts"),
    ({"kind": "error200", "path": OBSERVATIONS, "code": 423, "count": -1, "msg": "Locked."},
     VendorUnavailable, "HTTP 200 code 423: Locked. -- gave up after 4 attempts"),
    ({"kind": "truncated", "path": OBSERVATIONS, "count": -1}, VendorResponseError,
     "malformed JSON"),
    ({"kind": "empty", "path": OBSERVATIONS, "count": -1}, VendorResponseError,
     "0 rows at offset 0 where count=262 implies 262; the answer is incomplete"),
    ({"kind": "error200", "path": OBSERVATIONS, "msg": "Bad Request.  Variable units is bad."},
     VendorError, "HTTP 200 code 400: Bad Request.  Variable units is bad."),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "error", "text"), FAILS, ids=lambda f: str(f)[:40])
def test_fault_that_persists_fails_naming_the_request(
    fault: dict[str, Any], error: type[VendorError], text: str
) -> None:
    with served([fault]) as (client, sandbox, _), pytest.raises(error) as err:
        client.observations("DTWEXBGS", START, END)
    message = str(err.value)
    assert type(err.value) is error and message.startswith(SHOWN), message
    assert text in message and KEY not in message
    if type(err.value) is VendorError:
        assert sandbox.count() == 1  # a plain 400 is not retried


def test_423_from_fred_is_retried_and_without_fred_s_body_is_not() -> None:
    """423 "Locked" with FRED's body is a passing state: retried within the budget."""
    clock = FakeClock()
    locked = httpx.Response(423, json={"error_code": 423, "error_message": "Locked."})
    good = httpx.Response(200, json={"count": 1, "observations": [
        {"realtime_start": "2025-03-14", "realtime_end": "2025-03-14", "date": "2025-03-13",
         "value": "4.21"}]})  # fmt: skip
    transport, seen = scripted([locked, locked, good])
    client = FredClient(URL, KEY, transport=transport, sleep=clock.sleep, clock=clock.time)
    frame = client.observations("DGS10", date(2025, 3, 13), date(2025, 3, 13))
    assert frame["value"].to_list() == [4.21] and len(seen) == 3 and len(clock.sleeps) == 2
    transport, seen = scripted([httpx.Response(423, text="<html>Locked</html>")])
    bare = FredClient(URL, KEY, transport=transport, sleep=clock.sleep, clock=clock.time)
    with pytest.raises(VendorError) as err:
        bare.observations("DGS10", date(2025, 3, 13), date(2025, 3, 13))
    assert type(err.value) is VendorError and "HTTP 423" in str(err.value) and len(seen) == 1


ROW = {"realtime_start": "2025-03-14", "realtime_end": "2025-03-14", "date": "2025-03-13"}
SHAPES = [
    ([ROW], "expected a JSON dict, got"),
    ({"count": 1}, "'observations' is NoneType, not a list"),
    ({"count": "1", "observations": []}, "'count' is '1', not a row count"),
    ({"count": 1, "observations": [ROW]}, "an observation lacks one of ['date', 'value',"),
    ({"count": 1, "observations": [{**ROW, "value": 4.2}]}, "an observation lacks one of"),
    ({"count": 1, "observations": [{**ROW, "value": "n/a"}]},
     "series DGS10 date 2025-03-13: value 'n/a' is neither a number nor '.'"),
    ({"count": 1, "observations": [{**ROW, "value": "NaN"}]},
     "series DGS10 date 2025-03-13: value 'NaN' is neither a number nor '.'"),
    ({"count": 1, "observations": [{**ROW, "date": "13/03/2025", "value": "4.2"}]},
     "series DGS10: date '13/03/2025' is not a YYYY-MM-DD date"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "text"), SHAPES, ids=lambda x: str(x)[:30])
def test_a_wrongly_shaped_answer_names_the_endpoint(body: Any, text: str) -> None:
    transport, seen = scripted([httpx.Response(200, json=body)])
    client = FredClient(URL, KEY, transport=transport, sleep=lambda _: None)
    with pytest.raises(VendorResponseError) as err:
        client.observations("DGS10", date(2025, 3, 13), date(2025, 3, 13))
    message = str(err.value)
    assert message.startswith(f"fred GET {OBSERVATIONS} {{series_id=DGS10, api_key=***")
    assert text in message and len(seen) == 1 and KEY not in message
