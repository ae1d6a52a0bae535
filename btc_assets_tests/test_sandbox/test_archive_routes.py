"""The sandbox's data.binance.vision: real paths, publication and listing rules, byte-stable
zips, the real files' quirks (µs spot from 2025, USD-M header from 2022-05), archive faults,
the metrics model and openInterestHist, and the transport's latency setting."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from btc_assets.sandbox.binance_metrics import METRICS_SINCE, metrics_day
from btc_assets.sandbox.faults import FaultPlan, FaultPlanError
from btc_assets.sandbox.transport import SandboxTransport

NOW_MS = int(datetime(2025, 10, 9, 12, tzinfo=UTC).timestamp() * 1000)
SPOT_DAILY = "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{}.zip"
UM_DAILY = "/data/futures/um/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{}.zip"
SPOT_MONTHLY = "/data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-{}.zip"
FUNDING = "/data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-{}.zip"
METRICS = "/data/futures/um/daily/metrics/BTCUSDT/BTCUSDT-metrics-{}.zip"


def client(faults: list[dict[str, Any]] | None = None, **kw: Any) -> httpx.Client:
    transport = SandboxTransport(now_ms=NOW_MS, faults=json.dumps(faults or []), **kw)
    return httpx.Client(transport=transport, base_url="http://sandbox.archive.invalid")


def csv_lines(zipped: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        (name,) = archive.namelist()
        return archive.read(name).decode().splitlines()


def test_zip_and_checksum_as_published() -> None:
    path = SPOT_DAILY.format("2024-03-01")
    with client() as c:
        zipped, checksum = c.get(path), c.get(path + ".CHECKSUM")
    assert zipped.status_code == checksum.status_code == 200
    assert (
        checksum.text == f"{hashlib.sha256(zipped.content).hexdigest()}  BTCUSDT-1m-2024-03-01.zip"
    )
    with zipfile.ZipFile(io.BytesIO(zipped.content)) as archive:
        assert archive.namelist() == ["BTCUSDT-1m-2024-03-01.csv"]
    assert len(csv_lines(zipped.content)) == 1440


def test_zips_are_byte_deterministic_per_seed() -> None:
    path = METRICS.format("2024-03-01")
    a, b = client().get(path).content, client().get(path).content
    other = httpx.Client(transport=SandboxTransport(seed=8, now_ms=NOW_MS)).get("http://x" + path)
    assert a == b and other.content != a


@pytest.mark.parametrize(
    "path",
    [
        SPOT_DAILY.format("2025-10-09"),  # today: not over, not published
        SPOT_MONTHLY.format("2025-10"),  # this month
        UM_DAILY.format("2019-09-07"),  # the day before the perp listed
        METRICS.format("2020-08-31"),  # before the metrics archive starts
        "/data/spot/daily/klines/NOPEUSDT/1m/NOPEUSDT-1m-2024-03-01.zip",  # unknown symbol
        "/data/spot/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-03.zip",  # no spot
        "/data/futures/um/daily/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-03-01.zip",
        "/data/futures/um/monthly/metrics/BTCUSDT/BTCUSDT-metrics-2024-03.zip",
        "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2024-02-30.zip",
    ],
)
def test_files_that_do_not_exist_are_404(path: str) -> None:
    with client() as c:
        assert c.get(path).status_code == c.get(path + ".CHECKSUM").status_code == 404


def test_yesterday_and_last_month_are_published() -> None:
    with client() as c:
        assert c.get(SPOT_DAILY.format("2025-10-08")).status_code == 200
        assert c.get(SPOT_MONTHLY.format("2025-09")).status_code == 200


def test_spot_times_turn_to_microseconds_in_2025_and_um_gains_a_header_in_2022_05() -> None:
    with client() as c:
        spot_2024 = csv_lines(c.get(SPOT_DAILY.format("2024-12-31")).content)
        spot_2025 = csv_lines(c.get(SPOT_DAILY.format("2025-01-01")).content)
        um_old = csv_lines(c.get(UM_DAILY.format("2022-04-30")).content)
        um_new = csv_lines(c.get(UM_DAILY.format("2022-05-01")).content)
    assert spot_2024[0].split(",")[0] == "1735603200000"
    assert spot_2025[0].split(",")[0] == "1735689600000000"
    assert spot_2025[0].split(",")[6] == "1735689659999999"
    assert um_old[0][0].isdigit() and len(um_old) == 1440
    assert um_new[0].startswith("open_time,open,") and len(um_new) == 1441


def test_a_monthly_zip_holds_exactly_its_daily_zips() -> None:
    with client() as c:
        month = csv_lines(c.get(SPOT_MONTHLY.format("2024-02")).content)
        daily = [
            line
            for d in range(1, 30)
            for line in csv_lines(c.get(SPOT_DAILY.format(f"2024-02-{d:02d}")).content)
        ]
    assert month == daily and len(month) == 29 * 1440


def test_funding_file_holds_the_settlements_stamped_in_its_month() -> None:
    with client() as c:
        lines = csv_lines(c.get(FUNDING.format("2024-02")).content)
    assert lines[0] == "calc_time,funding_interval_hours,last_funding_rate"
    stamps = [int(line.split(",")[0]) for line in lines[1:]]
    first = int(datetime(2024, 2, 1, tzinfo=UTC).timestamp() * 1000)
    following = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1000)
    assert len(stamps) == 29 * 3 and first <= min(stamps) and max(stamps) < following


def test_archive_faults_change_the_published_file() -> None:
    day, path = "2024-03-05", UM_DAILY.format("2024-03-05")
    with client() as c:
        clean = c.get(path).content
    with client([{"kind": "checksum_mismatch", "path": path}]) as c:
        zipped, checksum = c.get(path).content, c.get(path + ".CHECKSUM").text
        assert zipped == clean and checksum.split()[0] != hashlib.sha256(clean).hexdigest()
    with client([{"kind": "corrupt_zip", "day": day}]) as c:
        zipped, checksum = c.get(path).content, c.get(path + ".CHECKSUM").text
        assert checksum.split()[0] == hashlib.sha256(zipped).hexdigest()  # published broken
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(zipped))
        assert c.get(UM_DAILY.format("2024-03-06")).content != zipped  # other days intact
    with client([{"kind": "header", "path": "/data/futures/um/*", "present": False}]) as c:
        assert len(csv_lines(c.get(path).content)) == 1440
    with client([{"kind": "microseconds", "path": "/data/futures/um/*"}]) as c:
        first = csv_lines(c.get(path).content)[1].split(",")
        assert len(first[0]) == 16 and c.get(path + ".CHECKSUM").status_code == 200
    with client([{"kind": "truncated_archive", "day": day, "drop_rows": 100}]) as c:
        assert len(csv_lines(c.get(path).content)) == 1441 - 100
    with client([{"kind": "archive_404", "path": "/data/futures/um/*", "day": day}]) as c:
        assert c.get(path).status_code == 404
        assert c.get("/data/futures/um/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2024-03.zip"
                     ).status_code == 404  # fmt: skip
        assert c.get(SPOT_DAILY.format(day)).status_code == 200
    with client([{"kind": "replaced", "day": day, "revision": 1}]) as c:
        republished = c.get(path).content
        assert hashlib.sha256(republished).digest() != hashlib.sha256(clean).digest()
        changed = [
            (a, b) for a, b in zip(csv_lines(clean), csv_lines(republished), strict=True) if a != b
        ]
        assert len(changed) == 1  # the day's first row, its high one tick up


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"kind": "header", "present": "no"}, "present"),
        ({"kind": "checksum_mismatch", "present": True}, "applies only to 'header'"),
        ({"kind": "archive_404", "path": "/data/spot/*", "start_minute": 3}, "do not apply"),
        ({"kind": "archive_404", "path": "/api/v3/klines"}, "data.binance.vision path"),
        ({"kind": "truncated_archive", "drop_rows": 0}, "drop_rows"),
    ],
)
def test_archive_fault_plans_are_checked(entry: dict[str, Any], words: str) -> None:
    with pytest.raises(FaultPlanError, match=words):
        FaultPlan.from_json(json.dumps([entry]))


def test_archive_faults_persist_for_zip_and_checksum() -> None:
    plan = FaultPlan.from_json('[{"kind": "microseconds", "path": "/data/spot/*"}]')
    assert plan.faults[0].count == -1


def test_metrics_model_is_plausible_and_priced_on_the_perp() -> None:
    day = date(2024, 6, 3)
    m = metrics_day(7, "BTCUSDT", day)
    assert len(m.create_ms) == 288
    assert (m.open_interest > 10_000).all() and (m.open_interest < 200_000).all()
    implied = m.open_interest_value / m.open_interest
    with client() as c:
        params = {"symbol": "BTCUSDT", "interval": "1m", "startTime": int(m.create_ms[1])}
        first = c.get("/fapi/v1/klines", params={**params, "limit": 1})
    assert implied[1] == pytest.approx(float(first.json()[0][1]), rel=1e-6)
    for ratio in (m.count_toptrader_ratio, m.sum_toptrader_ratio, m.taker_vol_ratio):
        assert (ratio > 0.2).all() and (ratio < 5).all()
    with pytest.raises(ValueError, match="2020-09-01"):
        metrics_day(7, "BTCUSDT", METRICS_SINCE.replace(day=1, month=8))


def test_open_interest_hist_serves_only_the_last_30_days() -> None:
    def ask(**params: Any) -> Any:
        with client() as c:
            return c.get("/futures/data/openInterestHist",
                         params={"symbol": "BTCUSDT", "period": "5m", **params}).json()  # fmt: skip

    day = 86_400_000
    assert ask(startTime=NOW_MS - 40 * day, endTime=NOW_MS - 31 * day) == []
    rows = ask(startTime=NOW_MS - 2 * day, limit=500)
    assert len(rows) == 500 and rows[0]["timestamp"] % 300_000 == 0
    assert set(rows[0]) == {"symbol", "sumOpenInterest", "sumOpenInterestValue", "timestamp"}
    latest = ask()
    assert len(latest) == 30 and latest[-1]["timestamp"] <= NOW_MS
    assert ask(limit=501) == {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."}


def test_transport_latency_really_waits_per_request() -> None:
    with client(latency_seconds=0.05) as c:
        started = time.perf_counter()
        for _ in range(3):
            c.get(SPOT_DAILY.format("2024-03-01") + ".CHECKSUM")
        assert time.perf_counter() - started >= 0.15
    with pytest.raises(ValueError, match="latency_seconds"):
        SandboxTransport(latency_seconds=-1)
