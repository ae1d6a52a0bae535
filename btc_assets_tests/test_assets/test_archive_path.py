"""The Binance raw assets on the archive path, end to end through Dagster and the lake.

History comes from data.binance.vision zips checked against their ``.CHECKSUM``; REST takes
the tail and any day the archive lacks. Each day says which it came from; a bad file
blocks its days (never read as good) and leaves the lake as it was; an archive replaced
upstream is fetched again on the next run.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import polars as pl

from btc_assets.lake import Lake
from btc_assets_tests.test_assets.helpers import (
    as_day,
    evaluations,
    lake_digest,
    latest_metadata,
    resources,
    run_range,
)

# Two months' edge, long ago: every day is archive territory (outside the REST tail).
DAYS = ["2024-02-28", "2024-02-29", "2024-03-01", "2024-03-02"]
SPOT = "binance_spot_klines_1m"
PERP = "binance_perp_klines_1m"
TABLES = [SPOT, PERP, "binance_funding_rate", "binance_metrics"]
SPOT_DAILY = "/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{}.zip"


def _archive(tmp_path: Path, faults: list[dict] | None = None) -> dict[str, object]:
    return resources(tmp_path, binance_archive=True, sandbox_faults=json.dumps(faults or []))


def _provenance(lake: Lake, table: str, day: str) -> dict:
    return lake.read_days(table, "BTCUSDT", [as_day(day)]).committed[as_day(day)].provenance


def test_archive_days_equal_rest_days_and_say_where_they_came_from(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    assert run_range(instance, _archive(tmp_path / "a"), DAYS[0], DAYS[-1], TABLES).success
    rest = resources(tmp_path / "r", binance_archive=False)
    assert run_range(instance, rest, DAYS[0], DAYS[-1], [SPOT, PERP]).success
    archive_lake, rest_lake = Lake(tmp_path / "a" / "lake"), Lake(tmp_path / "r" / "lake")
    days = [as_day(d) for d in DAYS]
    for table in (SPOT, PERP):
        a = archive_lake.read_days(table, "BTCUSDT", days).frame.collect()
        r = rest_lake.read_days(table, "BTCUSDT", days).frame.collect()
        assert a.height == 4 * 1440 and a.equals(r), table  # value for value
        p = _provenance(archive_lake, table, DAYS[0])
        assert p["source"] == "archive" and p["host"] == p["archive_url"].split("/")[2]
        assert len(p["archive_sha256"]) == 64 and p["complete"] is True
    # Monthly zips only for whole months of the range: these are daily ones.
    assert _provenance(archive_lake, SPOT, DAYS[0])["archive_period"] == "daily"
    meta = latest_metadata(instance, "binance_metrics", DAYS[1])
    assert meta["dagster/row_count"] == 288 and meta["source"] == "archive"


def test_a_day_the_archive_lacks_comes_from_rest_and_says_so(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    missing = [{"kind": "archive_404", "path": SPOT_DAILY.format(DAYS[2])}]
    assert run_range(instance, _archive(tmp_path, missing), DAYS[0], DAYS[-1], [SPOT]).success
    lake = Lake(tmp_path / "lake")
    assert _provenance(lake, SPOT, DAYS[2])["source"] == "rest"
    assert _provenance(lake, SPOT, DAYS[1])["source"] == "archive"
    meta = latest_metadata(instance, SPOT, DAYS[2])
    assert "404" in meta["archive_unavailable"] and meta["http_requests"] == 2


def test_a_short_archive_day_is_completed_from_rest_and_says_so(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    """A file with fewer rows than its day (truncated here; the last day of a month's
    funding file is the everyday case) is asked of REST, which has the whole day."""
    cut = [{"kind": "truncated_archive", "path": SPOT_DAILY.format(DAYS[1]), "drop_rows": 100}]
    result = run_range(instance, _archive(tmp_path, cut), DAYS[0], DAYS[-1], [SPOT])
    assert result.success
    lake = Lake(tmp_path / "lake")
    day = as_day(DAYS[1])
    stored = lake.read_days(SPOT, "BTCUSDT", [day])
    assert stored.frame.collect().height == 1440  # the whole day, not the file's 1340 rows
    assert stored.committed[day].provenance["source"] == "rest"
    assert stored.committed[day].provenance["complete"] is True
    meta = latest_metadata(instance, SPOT, DAYS[1])
    assert meta["archive_short"] is True and meta["archive_rows"] == 1340
    assert meta["archive_short_completed_by"] == "rest" and meta["http_requests"] == 2
    assert _provenance(lake, SPOT, DAYS[2])["source"] == "archive"  # its neighbours stay
    verdicts = {e.partition: e.passed for e in evaluations(result) if e.asset_key.path == [SPOT]}
    assert verdicts[DAYS[1]] is True, "the completed day still fails its check"


def test_a_short_archive_day_stays_when_rest_has_even_fewer_rows(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    cut = [
        {"kind": "truncated_archive", "path": SPOT_DAILY.format(DAYS[1]), "drop_rows": 100},
        {"kind": "gap", "path": "/api/v3/klines", "day": DAYS[1], "start_minute": 600,
         "minutes": 300},
    ]  # fmt: skip
    assert run_range(instance, _archive(tmp_path, cut), DAYS[0], DAYS[-1], [SPOT]).success
    stored = Lake(tmp_path / "lake").read_days(SPOT, "BTCUSDT", [as_day(DAYS[1])])
    assert stored.frame.collect().height == 1340  # the archive's rows, not REST's 1140
    provenance = stored.committed[as_day(DAYS[1])].provenance
    assert provenance["source"] == "archive" and provenance["complete"] is False
    meta = latest_metadata(instance, SPOT, DAYS[1])
    assert meta["archive_short"] is True and "archive_short_completed_by" not in meta


def test_a_checksum_mismatch_blocks_its_days_and_writes_nothing_of_them(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    bad = [{"kind": "checksum_mismatch", "path": SPOT_DAILY.format(DAYS[2])}]
    result = run_range(
        instance, _archive(tmp_path, bad), DAYS[0], DAYS[-1], [SPOT, "spot_klines_15m"]
    )
    assert result.success  # recorded as blocked days, not a failed step
    lake = Lake(tmp_path / "lake")
    # The bad file's month is not used; February's days are.
    assert lake.days_present(SPOT, "BTCUSDT") == [as_day(DAYS[0]), as_day(DAYS[1])]
    assert lake.days_present("spot_klines_15m", "BTCUSDT") == [as_day(DAYS[0]), as_day(DAYS[1])]
    failed = {(e.asset_key.to_user_string(), e.partition): e for e in evaluations(result)
              if not e.passed}  # fmt: skip
    why = failed[(SPOT, DAYS[2])].description or ""
    assert "sha256" in why and "BTCUSDT-1m-2024-03-01.zip" in why
    assert ("spot_klines_15m", DAYS[3]) in failed  # down the chain too


def test_an_archive_replaced_upstream_is_fetched_again_and_says_so(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    assert run_range(instance, _archive(tmp_path), DAYS[0], DAYS[-1], [SPOT]).success
    lake = Lake(tmp_path / "lake")
    before = _provenance(lake, SPOT, DAYS[1])["archive_sha256"]
    old = pl.read_parquet(lake.day_file(SPOT, "BTCUSDT", as_day(DAYS[1])))
    untouched = {k: v for k, v in lake_digest(tmp_path / "lake").items() if "d=28" in k}

    replaced = [{"kind": "replaced", "path": SPOT_DAILY.format(DAYS[1]), "revision": 1}]
    assert run_range(instance, _archive(tmp_path, replaced), DAYS[0], DAYS[-1], [SPOT]).success
    after = _provenance(lake, SPOT, DAYS[1])
    assert after["archive_sha256"] != before
    meta = latest_metadata(instance, SPOT, DAYS[1])
    assert "replaced upstream" in meta["fetched_again"] and before[:16] in meta["fetched_again"]
    assert latest_metadata(instance, SPOT, DAYS[0])["source"] == "reused"
    assert {k: v for k, v in lake_digest(tmp_path / "lake").items() if "d=28" in k} == untouched
    # What is stored now is the republished data: the first high moved by one unit of its
    # last printed digit (the archive prints 8 places).
    new = pl.read_parquet(lake.day_file(SPOT, "BTCUSDT", as_day(DAYS[1])))
    assert round(new["high"][0] - old["high"][0], 8) == 1e-8
    assert new.drop("high").equals(old.drop("high"))


def test_metrics_older_than_rest_reach_and_missing_from_the_archive_are_refused_by_name(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    gone = [{"kind": "archive_404", "path": "/data/futures/um/daily/metrics/*"}]
    result = run_range(instance, _archive(tmp_path, gone), DAYS[0], DAYS[0], ["binance_metrics"])
    assert result.success
    (evaluation,) = [e for e in evaluations(result) if e.partition == DAYS[0]]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert "openInterestHist" in (evaluation.description or "")
    assert "last 29 days" in (evaluation.description or "")
    assert Lake(tmp_path / "lake").days_present("binance_metrics", "BTCUSDT") == []
