"""ArchiveClient: real archive zips, planning (monthly vs daily, counted at the transport),
integrity failures that name the file, and archive == REST value for value on the sandbox."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btc_assets.core.schema import FUNDING_SCHEMA, KLINE_SCHEMA, METRICS_SCHEMA, day_bounds
from btc_assets.sandbox.transport import SandboxTransport
from btc_assets.vendors.binance import BinanceClient
from btc_assets.vendors.binance_archive import (
    ArchiveClient,
    ArchiveDataset,
    ArchiveIntegrityError,
    archive_path,
)
from btc_assets.vendors.binance_archive_parse import has_header, parse_kline_csv
from btc_assets_tests.fixtures import path as fixture

SPOT, UM, FUNDING, METRICS = (
    ArchiveDataset.SPOT_KLINES_1M, ArchiveDataset.UM_KLINES_1M,
    ArchiveDataset.UM_FUNDING_RATE, ArchiveDataset.UM_METRICS,
)  # fmt: skip
TODAY = date(2025, 10, 9)
NOW_MS = int(datetime(2025, 10, 9, 12, tzinfo=UTC).timestamp() * 1000)
ARCHIVE_URL = "http://sandbox.archive.invalid"
FIXTURE_DAYS = [date(2020, 1, 1), date(2020, 1, 2), date(2020, 1, 3)]


def days(first: date, n: int) -> list[date]:
    return [first + timedelta(i) for i in range(n)]


def sandbox(faults: list[dict[str, Any]] | None = None) -> SandboxTransport:
    return SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults or []))


def archive(transport: httpx.BaseTransport, **kw: Any) -> ArchiveClient:
    return ArchiveClient(ARCHIVE_URL, transport=transport, max_retries=0, **kw)


def rest(transport: SandboxTransport) -> BinanceClient:
    return BinanceClient("http://s.invalid", "http://f.invalid", transport=transport,
                         now_ms=lambda: NOW_MS)  # fmt: skip


# --- the real files --------------------------------------------------------------------------


def real_archive() -> httpx.MockTransport:
    """The fixture zips and checksums under their real paths; anything else 404."""
    files = {}
    for day in FIXTURE_DAYS:
        path = archive_path(SPOT, "BTCUSDT", "daily", day)
        name = path.rsplit("/", 1)[1]
        files[path] = fixture(f"binance_spot_archive/{name}").read_bytes()
        files[path + ".CHECKSUM"] = fixture(f"binance_spot_archive/{name}.CHECKSUM").read_bytes()

    def handler(request: httpx.Request) -> httpx.Response:
        body = files.get(request.url.path)
        return httpx.Response(200, content=body) if body else httpx.Response(404)

    return httpx.MockTransport(handler)


def test_real_archive_zips_verify_and_parse_to_the_csv_values() -> None:
    with archive(real_archive()) as client:
        got = client.fetch_days(SPOT, "BTCUSDT", FIXTURE_DAYS, TODAY)
    assert got.requests == 6 and not got.unavailable  # 3 checksums + 3 zips
    for day in FIXTURE_DAYS:
        d = got.days[day]
        name = f"BTCUSDT-1m-{day}.zip"
        zipped = fixture(f"binance_spot_archive/{name}").read_bytes()
        published = fixture(f"binance_spot_archive/{name}.CHECKSUM").read_text().split()[0]
        assert d.sha256 == published == hashlib.sha256(zipped).hexdigest()
        assert (d.file, d.period, d.rows, d.expected_rows, d.short) == (name, "daily", 1440, 1440,
                                                                        False)  # fmt: skip
        assert d.frame.schema == pl.Schema(KLINE_SCHEMA)
        text = zipfile.ZipFile(io.BytesIO(zipped)).read(name.replace(".zip", ".csv")).decode()
        rows = list(csv.reader(text.splitlines()))
        assert len(rows) == 1440
        start, end = day_bounds(day)
        assert d.frame["ts"].min() == start + timedelta(minutes=1)
        assert d.frame["ts"].max() == end
        for i in (0, 777, 1439):
            row, mine = rows[i], d.frame.row(i, named=True)
            assert mine["ts"] == datetime.fromtimestamp((int(row[0]) + 60_000) / 1000, UTC)
            assert [mine[c] for c in ("open", "high", "low", "close", "volume")] == [
                float(x) for x in row[1:6]
            ]
            assert (mine["quote_volume"], mine["trades"]) == (float(row[7]), int(row[8]))
            assert (mine["taker_buy_volume"], mine["taker_buy_quote_volume"]) == (
                float(row[9]), float(row[10]),
            )  # fmt: skip


def test_header_row_and_microseconds_are_detected_per_file() -> None:
    name = "BTCUSDT-1m-2020-01-02"
    zipped = fixture(f"binance_spot_archive/{name}.zip").read_bytes()
    text = zipfile.ZipFile(io.BytesIO(zipped)).read(f"{name}.csv")
    plain = parse_kline_csv(text, "real", 60_000)
    header = b"open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    headed = header + b"taker_buy_volume,taker_buy_quote_volume,ignore\n" + text
    assert not has_header(text) and has_header(headed)
    assert parse_kline_csv(headed, "headed", 60_000).equals(plain)
    lines = [r.split(b",") for r in text.splitlines()]

    def in_micros(r: list[bytes]) -> bytes:
        open_us, close_us = int(r[0]) * 1000, int(r[6]) * 1000 + 999
        return b",".join([str(open_us).encode(), *r[1:6], str(close_us).encode(), *r[7:]])

    micros = b"\n".join(in_micros(r) for r in lines)
    assert parse_kline_csv(micros, "micros", 60_000).equals(plain)


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "words"),
    [("checksum_mismatch", "sha256 mismatch"), ("corrupt_zip", "not a readable zip")],
)
def test_a_file_that_does_not_verify_fails_the_fetch_naming_it(kind: str, words: str) -> None:
    bad_day = date(2024, 3, 5)
    transport = sandbox([{"kind": kind, "path": "/data/futures/um/*", "day": str(bad_day)}])
    client = archive(transport)
    with pytest.raises(ArchiveIntegrityError) as caught:
        client.fetch_days(UM, "BTCUSDT", days(date(2024, 3, 4), 3), TODAY)
    text = str(caught.value)
    assert words in text
    assert ARCHIVE_URL + archive_path(UM, "BTCUSDT", "daily", bad_day) in text
    # the neighbours alone verify: only the file of the faulty day is refused
    fine = client.fetch_days(UM, "BTCUSDT", [bad_day - timedelta(1), bad_day + timedelta(1)], TODAY)
    assert len(fine.days) == 2


def test_checksum_mismatch_names_the_expected_and_actual_hash() -> None:
    day = date(2024, 3, 5)
    clean = archive(sandbox()).fetch_days(UM, "BTCUSDT", [day], TODAY).days[day]
    transport = sandbox([{"kind": "checksum_mismatch", "day": str(day)}])
    with pytest.raises(ArchiveIntegrityError) as caught:
        archive(transport).fetch_days(UM, "BTCUSDT", [day], TODAY)
    assert f"hashes to {clean.sha256}" in str(caught.value)
    assert caught.value.endpoint.endswith(clean.file)


def test_missing_and_unpublished_days_are_unavailable_not_errors() -> None:
    gone = date(2025, 10, 3)
    transport = sandbox([{"kind": "archive_404", "path": "/data/spot/*", "day": str(gone)}])
    asked = days(date(2025, 10, 1), 10)  # to 10-10; today is 10-09
    with archive(transport) as client:
        got = client.fetch_days(SPOT, "BTCUSDT", asked, TODAY)
    assert sorted(got.days) == [d for d in asked if d < TODAY and d != gone]
    assert "404" in got.unavailable[gone]
    assert all("not yet published" in got.unavailable[d] for d in (TODAY, TODAY + timedelta(1)))
    assert transport.count() == got.requests == 2 * 7 + 1  # the 404 checksum ends its file;
    # nothing is asked for the unpublished days


def test_truncated_file_gives_a_short_day_never_a_complete_one() -> None:
    cut = date(2024, 2, 10)
    faults = [{"kind": "truncated_archive", "path": "/data/spot/*", "day": str(cut),
               "drop_rows": 15}]  # fmt: skip
    got = archive(sandbox(faults)).fetch_days(SPOT, "BTCUSDT", days(date(2024, 2, 9), 3), TODAY)
    assert (got.days[cut].rows, got.days[cut].expected_rows, got.days[cut].short) == (
        1425, 1440, True,
    )  # fmt: skip
    assert [got.days[d].short for d in sorted(got.days) if d != cut] == [False, False]


def test_whole_ended_months_are_one_monthly_zip_and_a_missing_month_falls_back() -> None:
    asked = days(date(2024, 1, 1), 31 + 2)  # all of January, two days of February
    transport = sandbox()
    got = archive(transport).fetch_days(SPOT, "BTCUSDT", asked, TODAY)
    monthly = [r for r in transport.requests if "/monthly/" in r.path]
    daily = [r for r in transport.requests if "/daily/" in r.path]
    assert (len(monthly), len(daily), got.requests) == (2, 4, 6)
    assert {got.days[d].period for d in asked} == {"monthly", "daily"}
    assert got.days[date(2024, 1, 31)].file == "BTCUSDT-1m-2024-01.zip"

    late = sandbox([{"kind": "archive_404", "path": "/data/spot/monthly/*"}])
    fell_back = archive(late).fetch_days(SPOT, "BTCUSDT", asked, TODAY)
    assert late.count() == 1 + 2 * 33  # the month's checksum 404s, then 33 daily pairs
    assert {d.period for d in fell_back.days.values()} == {"daily"}
    for day in asked:
        assert fell_back.days[day].frame.equals(got.days[day].frame)


def test_funding_comes_monthly_only_and_an_unfinished_month_is_unavailable() -> None:
    asked = [date(2025, 9, 29), date(2025, 9, 30), date(2025, 10, 2)]
    got = archive(sandbox()).fetch_days(FUNDING, "BTCUSDT", asked, TODAY)
    assert "2025-10 has not ended" in got.unavailable[date(2025, 10, 2)]
    # 09-30's midnight settlement sits in October's file, not published yet: short, not lost
    last = got.days[date(2025, 9, 30)]
    assert (last.rows, last.expected_rows, last.short) == (2, 3, True)
    assert got.days[date(2025, 9, 29)].short is False


# --- archive == REST on the sandbox ------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "day"),
    [(SPOT, date(2024, 6, 3)), (SPOT, date(2025, 1, 1)), (UM, date(2022, 4, 30)),
     (UM, date(2022, 5, 1)), (UM, date(2025, 6, 30))],
)  # fmt: skip
def test_archive_klines_equal_rest_value_for_value(dataset: ArchiveDataset, day: date) -> None:
    """Spot from 2025 is µs in the archive, USD-M gains a header in 2022-05: same frames."""
    transport = sandbox()
    got = archive(transport).fetch_days(dataset, "BTCUSDT", [day], TODAY).days[day]
    client = rest(transport)
    fetch = client.spot_klines if dataset is SPOT else client.futures_klines
    expected = fetch("BTCUSDT", "1m", *day_bounds(day))
    assert expected.height == 1440
    assert got.frame.equals(expected)


def test_archive_funding_equals_rest_but_has_no_mark_price() -> None:
    transport = sandbox()
    asked = days(date(2025, 7, 30), 4)  # across a month end
    got = archive(transport).fetch_days(FUNDING, "BTCUSDT", asked, TODAY)
    client = rest(transport)
    for day in asked:
        expected = client.funding_rate("BTCUSDT", *day_bounds(day))
        frame = got.days[day].frame
        assert frame.schema == pl.Schema(FUNDING_SCHEMA) and frame.height == 3
        assert frame.drop("mark_price").equals(expected.drop("mark_price"))
        assert frame["mark_price"].null_count() == 3 and expected["mark_price"].null_count() == 0


def test_archive_metrics_equal_open_interest_hist() -> None:
    transport = sandbox()
    asked = days(TODAY - timedelta(days=5), 3)
    got = archive(transport).fetch_days(METRICS, "BTCUSDT", asked, TODAY)
    client = rest(transport)
    oi = ["symbol", "ts", "sum_open_interest", "sum_open_interest_value"]
    for day in asked:
        frame = got.days[day].frame
        expected = client.open_interest_hist("BTCUSDT", *day_bounds(day))
        assert frame.schema == expected.schema == pl.Schema(METRICS_SCHEMA)
        assert frame.height == expected.height == 288
        assert frame.select(oi).equals(expected.select(oi))
        assert frame.drop(oi).null_count().sum_horizontal().item() == 0
        assert expected.drop(oi).null_count().sum_horizontal().item() == 4 * 288
    # the midnight snapshot closes the day; file D's 00:00 row went to D-1
    first = got.days[asked[0]]
    assert first.frame["ts"].max() == day_bounds(asked[0])[1]
    assert first.also_from == (ARCHIVE_URL + archive_path(METRICS, "BTCUSDT", "daily",
                                                          asked[1]),)  # fmt: skip


def test_metrics_day_before_today_misses_its_midnight_row() -> None:
    yesterday = TODAY - timedelta(days=1)
    got = archive(sandbox()).fetch_days(METRICS, "BTCUSDT", [yesterday], TODAY).days[yesterday]
    assert (got.rows, got.expected_rows, got.short) == (287, 288, True)


def test_a_replaced_archive_has_a_new_checksum_and_one_changed_value() -> None:
    day = date(2024, 8, 14)
    before = archive(sandbox()).fetch_days(UM, "BTCUSDT", [day], TODAY).days[day]
    fault = [{"kind": "replaced", "path": "/data/futures/um/*", "day": str(day), "revision": 2}]
    after = archive(sandbox(fault)).fetch_days(UM, "BTCUSDT", [day], TODAY).days[day]
    assert after.sha256 != before.sha256
    changed = (
        before.frame.with_row_index()
        .join(after.frame.with_row_index(), on="index", suffix="_new")
        .filter(pl.col("high") != pl.col("high_new"))
    )
    assert changed.height == 1
    assert changed["high_new"][0] == pytest.approx(changed["high"][0] + 0.02)  # 2 units of 0.01


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sets(st.integers(0, 40), min_size=1, max_size=8))
def test_a_day_reads_the_same_whatever_else_is_asked(offsets: set[int]) -> None:
    """Planning (monthly or daily files, the next day's file for the midnight row) never
    changes a day's rows: every set of days gives each day what asking it alone gives."""
    transport = sandbox()
    client = archive(transport, max_workers=2)
    asked = [date(2024, 1, 25) + timedelta(i) for i in offsets]
    for dataset in (FUNDING, METRICS):
        together = client.fetch_days(dataset, "BTCUSDT", asked, TODAY)
        for day in asked:
            alone = client.fetch_days(dataset, "BTCUSDT", [day], TODAY).days[day]
            assert together.days[day].frame.equals(alone.frame)
            start, end = day_bounds(day)
            assert together.days[day].frame["ts"].is_between(start, end, closed="right").all()
