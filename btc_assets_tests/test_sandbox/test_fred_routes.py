"""The sandbox's FRED route: envelope and defaults, weekdays and "." holidays, publication and
revision vintages, real-time windows, paging, FRED's error bodies, the limit and faults."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from btc_assets.sandbox.credentials import SANDBOX_FRED_API_KEY
from btc_assets.sandbox.server import serve_sandbox
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.sandbox.us_calendar import is_fed_business_day, is_nyse_session

PATH = "/fred/series/observations"
TODAY = date(2025, 3, 14)  # a Friday
OPEN_END = "9999-12-31"
DOCS = "Read https://fred.stlouisfed.org/docs/api/api_key.html for more information."


def ms(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)


def get(sandbox: SandboxTransport, **params: Any) -> httpx.Response:
    query = {"series_id": "DTWEXBGS", "api_key": SANDBOX_FRED_API_KEY, "file_type": "json"}
    query = {k: v for k, v in {**query, **params}.items() if v is not None}
    with httpx.Client(transport=sandbox, base_url="http://api.stlouisfed.org") as client:
        return client.get(PATH, params=query)


def rows(sandbox: SandboxTransport, **params: Any) -> list[dict[str, str]]:
    response = get(sandbox, **params)
    assert response.status_code == 200, response.text
    return response.json()["observations"]


def next_business_day(day: date) -> date:
    """Written apart from the sandbox's own helper, so the two check each other."""
    day += timedelta(days=1)
    while day.weekday() >= 5 or not is_fed_business_day(day):
        day += timedelta(days=1)
    return day


def weekdays(first: date, last: date) -> list[date]:
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    return [d for d in days if d.weekday() < 5]


@pytest.fixture
def sandbox() -> SandboxTransport:
    return SandboxTransport(now_ms=ms(TODAY))


def test_envelope_and_defaults_as_fred_answers(sandbox: SandboxTransport) -> None:
    body = get(sandbox, series_id="DGS10", observation_start="2025-03-03").json()
    assert set(body) == {
        "realtime_start", "realtime_end", "observation_start", "observation_end", "units",
        "output_type", "file_type", "order_by", "sort_order", "count", "offset", "limit",
        "observations",
    }  # fmt: skip
    assert (body["realtime_start"], body["realtime_end"]) == ("2025-03-14", "2025-03-14")
    assert body["observation_end"] == OPEN_END and body["limit"] == 100_000
    assert (body["offset"], body["sort_order"], body["units"]) == (0, "asc", "lin")
    obs = body["observations"]
    assert body["count"] == len(obs) == 9  # 03-03 .. 03-13: today's value is not out yet
    assert all(set(r) == {"realtime_start", "realtime_end", "date", "value"} for r in obs)
    # the default window is today: every row's period is today..today (FRED clips to it)
    assert {(r["realtime_start"], r["realtime_end"]) for r in obs} == {("2025-03-14",) * 2}
    full = get(sandbox).json()
    assert full["observation_start"] == "1600-01-01"
    assert full["observations"][0]["date"] == "2006-01-02"  # DTWEXBGS's first day


def test_weekdays_only_with_dot_on_the_series_calendar_holidays(sandbox: SandboxTransport) -> None:
    year = {"observation_start": "2024-01-01", "observation_end": "2024-12-31"}
    for series, open_on, decimals in (
        ("DTWEXBGS", is_fed_business_day, 4), ("DGS10", is_fed_business_day, 2),
        ("VIXCLS", is_nyse_session, 2),
    ):  # fmt: skip
        obs = rows(sandbox, series_id=series, **year)
        expected = weekdays(date(2024, 1, 1), date(2024, 12, 31))
        assert [r["date"] for r in obs] == [d.isoformat() for d in expected]
        for r in obs:
            day = date.fromisoformat(r["date"])
            assert (r["value"] == ".") == (not open_on(day)), (series, day)
            if r["value"] != ".":
                assert len(r["value"].split(".")[1]) == decimals
    dgs10 = {r["date"]: r["value"] for r in rows(sandbox, series_id="DGS10", **year)}
    vix = {r["date"]: r["value"] for r in rows(sandbox, series_id="VIXCLS", **year)}
    assert dgs10["2024-03-29"] != "." and vix["2024-03-29"] == "."  # Good Friday: NYSE shut
    assert dgs10["2024-10-14"] == "." and vix["2024-10-14"] != "."  # Columbus Day: Fed shut


def test_levels_look_like_the_series() -> None:
    sandbox = SandboxTransport(now_ms=ms(TODAY))
    for series, lo, hi in (("DTWEXBGS", 90, 150), ("DGS10", 0.3, 9), ("DGS2", 0.05, 9),
                           ("VIXCLS", 8, 60)):  # fmt: skip
        values = [float(r["value"]) for r in rows(sandbox, series_id=series) if r["value"] != "."]
        assert len(values) > 4000 and lo < min(values) and max(values) < hi, series
        moves = sorted(abs(b / a - 1) for a, b in itertools.pairwise(values))
        assert moves[len(moves) // 2] < 0.08, series  # a walk, not noise


@pytest.mark.parametrize(
    ("now", "last_date", "last_value_dot"),
    [
        (date(2025, 3, 14), "2025-03-13", False),  # Thursday's value is out on Friday
        (date(2025, 1, 21), "2025-01-20", True),  # MLK Monday's "." is out on Tuesday
        (date(2025, 1, 20), "2025-01-16", False),  # on the holiday nothing new is published
    ],
)
def test_a_day_is_published_on_the_next_business_day(
    now: date, last_date: str, last_value_dot: bool
) -> None:
    obs = rows(SandboxTransport(now_ms=ms(now)), observation_start="2025-01-01")
    assert obs[-1]["date"] == last_date and (obs[-1]["value"] == ".") == last_value_dot


def test_vintages_first_publication_and_one_revision_a_week_later(
    sandbox: SandboxTransport,
) -> None:
    obs = rows(sandbox, observation_start="2023-01-01", observation_end="2024-12-31",
               realtime_start="2022-12-01", realtime_end=OPEN_END)  # fmt: skip
    by_date: dict[str, list[dict[str, str]]] = {}
    for r in obs:
        by_date.setdefault(r["date"], []).append(r)
    revised = {d: v for d, v in by_date.items() if len(v) == 2}
    numeric = [d for d, v in by_date.items() if v[0]["value"] != "."]
    assert 0.05 < len(revised) / len(numeric) < 0.15  # about one in ten
    assert max(len(v) for v in by_date.values()) == 2  # revised once at most
    for day, (first, *later) in by_date.items():
        assert first["realtime_start"] == next_business_day(date.fromisoformat(day)).isoformat()
        if not later:
            assert first["realtime_end"] == OPEN_END
            continue
        second = later[0]
        assert first["value"] != "." and first["value"] != second["value"]
        begins = date.fromisoformat(second["realtime_start"])
        lag = (begins - date.fromisoformat(first["realtime_start"])).days
        assert is_fed_business_day(begins) and 7 <= lag <= 10  # a week, rolled to a business day
        assert first["realtime_end"] == (begins - timedelta(days=1)).isoformat()
        assert second["realtime_end"] == OPEN_END


def test_a_past_window_sees_what_was_known_then(sandbox: SandboxTransport) -> None:
    everything = rows(sandbox, observation_start="2024-06-01", observation_end="2024-08-31",
                      realtime_start="2024-05-01", realtime_end=OPEN_END)  # fmt: skip
    old, new = next((a, b) for a, b in itertools.pairwise(everything)
                    if a["date"] == b["date"])  # fmt: skip
    before = date.fromisoformat(new["realtime_start"]) - timedelta(days=1)
    for as_of, expected in ((before, old), (date.fromisoformat(new["realtime_start"]), new)):
        seen = rows(sandbox, observation_start="2024-06-01", observation_end="2024-08-31",
                    realtime_start=as_of.isoformat(), realtime_end=as_of.isoformat())  # fmt: skip
        assert len({r["date"] for r in seen}) == len(seen)  # one vintage per date in a day
        stamped = {(r["realtime_start"], r["realtime_end"]) for r in seen}
        assert stamped == {(as_of.isoformat(), as_of.isoformat())}
        assert max(date.fromisoformat(r["date"]) for r in seen) < as_of
        assert next(r for r in seen if r["date"] == old["date"])["value"] == expected["value"]


def test_the_future_is_unknown() -> None:
    """A revision published after today does not exist yet, and does not end today's vintage."""
    later = SandboxTransport(now_ms=ms(date(2024, 9, 30)))
    window = {"observation_start": "2024-06-01", "observation_end": "2024-08-31",
              "realtime_start": "2024-05-01", "realtime_end": OPEN_END}  # fmt: skip
    everything = rows(later, **window)
    old, new = next((a, b) for a, b in itertools.pairwise(everything)
                    if a["date"] == b["date"])  # fmt: skip
    today = date.fromisoformat(new["realtime_start"]) - timedelta(days=1)
    seen = rows(SandboxTransport(now_ms=ms(today)), **window)
    assert all(date.fromisoformat(r["realtime_start"]) <= today for r in seen)
    assert all(date.fromisoformat(r["date"]) < today for r in seen)
    assert [r for r in seen if r["date"] == old["date"]] == [{**old, "realtime_end": OPEN_END}]


def test_same_seed_same_world_other_seed_other_values() -> None:
    a, b = (get(SandboxTransport(seed=7, now_ms=ms(TODAY))).content for _ in range(2))
    assert a == b
    other = rows(SandboxTransport(seed=8, now_ms=ms(TODAY)))
    assert [r["date"] for r in other] == [r["date"] for r in json.loads(a)["observations"]]
    assert [r["value"] for r in other] != [r["value"] for r in json.loads(a)["observations"]]


def test_limit_offset_and_sort_order(sandbox: SandboxTransport) -> None:
    year = {"observation_start": "2024-01-01", "observation_end": "2024-12-31"}
    full = rows(sandbox, **year)
    page = get(sandbox, limit=10, offset=20, **year).json()
    assert page["observations"] == full[20:30] and page["count"] == len(full) == 262
    assert (page["limit"], page["offset"]) == (10, 20)
    assert rows(sandbox, sort_order="desc", **year) == full[::-1]
    assert rows(sandbox, offset=1000, **year) == []


BAD = [
    ({"api_key": None}, f"Bad Request.  Variable api_key is not set.  {DOCS}"),
    ({"api_key": "Sandbox-Key"}, "Bad Request.  The value for variable api_key is not a 32 "
     f"character alpha-numeric lower-case string.  {DOCS}"),
    ({"api_key": "0" * 32}, f"Bad Request.  The value for variable api_key is not registered.  "
     f"{DOCS}"),
    ({"series_id": "NOSUCHSERIES"}, "Bad Request.  The series does not exist."),
    ({"series_id": None}, "Bad Request.  Variable series_id is not set."),
    ({"observation_start": "2024/01/01"}, "Bad Request.  Variable observation_start is not a "
     "valid date in the format YYYY-MM-DD."),
    ({"observation_start": "2024-02-01", "observation_end": "2024-01-01"},
     "Bad Request.  Variable observation_end can not be before variable observation_start."),
    ({"realtime_start": "2024-02-01", "realtime_end": "2024-01-01"},
     "Bad Request.  Variable realtime_end can not be before variable realtime_start."),
    ({"realtime_start": "2025-03-15"},
     "Bad Request.  Variable realtime_start can not be after today's date."),
    ({"limit": "0"}, "Bad Request.  Variable limit is not between 1 and 100000."),
    ({"limit": "100001"}, "Bad Request.  Variable limit is not between 1 and 100000."),
    ({"offset": "-1"}, "Bad Request.  Variable offset is not between 0 and 1000000000000."),
    ({"sort_order": "up"},
     "Bad Request.  Variable sort_order is not one of the values: 'asc', 'desc'."),
    ({"units": "pch"}, "Bad Request.  The sandbox serves units=lin only."),
]  # fmt: skip


@pytest.mark.parametrize(("params", "message"), BAD)
def test_bad_requests_get_fred_s_400_body(
    sandbox: SandboxTransport, params: dict[str, Any], message: str
) -> None:
    response = get(sandbox, **params)
    assert response.status_code == 400
    assert response.json() == {"error_code": 400, "error_message": message}


@pytest.mark.parametrize("file_type", [None, "xml", "csv"])
def test_anything_but_json_is_answered_in_fred_s_xml_error_shape(
    sandbox: SandboxTransport, file_type: str | None
) -> None:
    response = get(sandbox, file_type=file_type)
    assert response.status_code == 400 and "xml" in response.headers["content-type"]
    assert response.text.startswith('<?xml version="1.0" encoding="utf-8" ?>\n<error code="400"')


def test_past_the_per_minute_limit_fred_answers_429() -> None:
    sandbox = SandboxTransport(now_ms=ms(TODAY), clock=lambda: 1_000_000.0, limits={"fred": 3})
    assert [get(sandbox).status_code for _ in range(3)] == [200] * 3
    refused = get(sandbox)
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    message = "Too Many Requests.  Exceeded Rate Limit"
    assert refused.json() == {"error_code": 429, "error_message": message}


def test_http_faults_in_fred_s_shapes() -> None:
    plan = [
        {"kind": "429", "path": PATH, "retry_after": 2},
        {"kind": "503", "path": PATH, "skip": 1},
        {"kind": "error200", "path": PATH, "code": 423, "msg": "Locked.", "skip": 2},
        {"kind": "500", "path": PATH, "symbol": "DGS10"},  # only that series
    ]
    sandbox = SandboxTransport(now_ms=ms(TODAY), faults=json.dumps(plan))
    limited = get(sandbox)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["error_code"] == 429
    assert get(sandbox).status_code == 503
    locked = get(sandbox)  # FRED never does this: an error body inside an HTTP 200
    assert locked.status_code == 200
    assert locked.json() == {"error_code": 423, "error_message": "Locked."}
    assert get(sandbox).status_code == 200  # DTWEXBGS is not hit by the DGS10 fault
    failed = get(sandbox, series_id="DGS10")
    assert failed.status_code == 500
    assert failed.json() == {"error_code": 500, "error_message": "Internal Server Error."}
    assert sandbox.faults.fired() == 4


def test_data_faults_on_the_observations() -> None:
    window = {"observation_start": "2024-01-01", "observation_end": "2024-01-31"}
    clean = rows(SandboxTransport(now_ms=ms(TODAY)), **window)
    plan = [{"kind": "gap", "path": PATH, "day": "2024-01-10"},
            {"kind": "empty", "path": PATH, "skip": 1},
            {"kind": "extra_field", "path": PATH, "skip": 2}]  # fmt: skip
    sandbox = SandboxTransport(now_ms=ms(TODAY), faults=json.dumps(plan))
    holed = get(sandbox, **window).json()
    assert holed["observations"] == [r for r in clean if r["date"] != "2024-01-10"]
    assert holed["count"] == len(clean) - 1  # the vendor lost the day: its count agrees
    empty = get(sandbox, **window).json()
    assert empty["observations"] == [] and empty["count"] == len(clean) - 1
    extra = rows(sandbox, **window)
    assert all(r["footnote"] == "" for r in extra)


def test_the_loopback_server_answers_the_same_bytes() -> None:
    sandbox = SandboxTransport(now_ms=ms(TODAY))
    query = {"series_id": "DGS2", "api_key": SANDBOX_FRED_API_KEY, "file_type": "json",
             "observation_start": "2025-01-01"}  # fmt: skip
    with serve_sandbox(transport=sandbox) as url:
        served = httpx.get(url + PATH, params=query)
    assert served.status_code == 200
    assert served.content == get(sandbox, **query).content
