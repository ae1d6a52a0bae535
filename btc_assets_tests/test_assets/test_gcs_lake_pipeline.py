"""The whole graph on a GCS lake (BTC_ASSETS_LAKE_URL=gs://...): what the local lake promises
holds there too, at full depth. The emulator enforces GCS's generation preconditions; damage
is done through Google's own client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from btc_assets.defs.checks import QUALITY
from btc_assets.lake import Lake
from btc_assets_tests.emulators import GcsEmulator
from btc_assets_tests.gcs_lake import blob, fresh_url
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
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]


@pytest.fixture
def lake_url(gcs_server: GcsEmulator) -> str:
    return fresh_url()


def _objects(url: str) -> dict[str, str]:
    """Every object under the lake with its md5: what changed, from GCS's side."""
    lake = Lake(url)
    prefix = str(lake.root).removeprefix("gs://")
    fs = lake.storage.fs  # type: ignore[attr-defined]
    return {
        info["name"][len(prefix) + 1 :]: info["md5Hash"]
        for info in fs.find(prefix, detail=True).values()
    }


def _quality_passed(result: dg.ExecuteInProcessResult, name: str, day: str) -> bool:
    return next(
        e.passed
        for e in evaluations(result)
        if (e.asset_key.path[-1], e.check_name, e.partition) == (name, QUALITY, day)
    )


def test_the_graph_builds_into_gcs_and_a_rerun_changes_no_byte(
    tmp_path: Path, instance: dg.DagsterInstance, lake_url: str
) -> None:
    res = resources(tmp_path, lake_url=lake_url)
    assert run_range(instance, res, DAYS[0], DAYS[-1]).success
    assert not (tmp_path / "lake").exists()  # nothing went to the local default
    lake = Lake(lake_url)
    tables = set(lake.tables())
    assert {"binance_perp_klines_1m", "coinglass_open_interest", "bars_15m", "features_1h",
            "signals", "coinglass_liquidation_heatmap"} <= tables  # fmt: skip
    for name in ("binance_perp_klines_1m", "bars_15m", "features_1h", "signals"):
        read = lake.read_days(name, SYMBOL, [as_day(d) for d in DAYS])
        assert sorted(str(d) for d in read.committed) == DAYS, (name, read.errors, read.missing)
        assert read.frame.collect().height > 0
    meta = latest_metadata(instance, "bars_15m", DAYS[1])
    assert str(meta["lake_path"]).startswith(lake_url + "/bars_15m/")

    before = _objects(lake_url)
    assert run_range(instance, res, DAYS[0], DAYS[-1], force=True).success
    after = _objects(lake_url)
    changed = sorted(k for k in before if after.get(k) != before[k] and "MANIFEST" not in k)
    assert changed == []  # every data file and marker byte-identical; manifests re-committed


def test_a_corrupt_object_blocks_its_day_at_every_depth_and_stays_out_of_the_views(
    tmp_path: Path, instance: dg.DagsterInstance, lake_url: str
) -> None:
    res = resources(tmp_path, lake_url=lake_url)
    assert run_range(instance, res, DAYS[0], DAYS[-1]).success
    lake = Lake(lake_url)
    raw = lake.day_file("binance_perp_klines_1m", SYMBOL, as_day(DAYS[1]))
    data = bytearray(blob(str(raw)).download_as_bytes())
    data[len(data) // 2] ^= 0xFF
    blob(str(raw)).upload_from_string(bytes(data))  # a bad copy over the committed object

    derived = run_range(instance, res, DAYS[0], DAYS[-1], ["perp_klines_15m", "bars_15m"])
    assert derived.success
    for name in ("perp_klines_15m", "bars_15m"):
        assert not _quality_passed(derived, name, DAYS[1])
        assert latest_metadata(instance, name, DAYS[1])["blocked"] is True
        assert _quality_passed(derived, name, DAYS[0]) and _quality_passed(derived, name, DAYS[2])

    assert build_catalog(instance, res).success
    excluded = catalog_metadata(instance)["excluded_days"]["binance_perp_klines_1m"]
    assert list(excluded) == [f"{SYMBOL} {DAYS[1]}"] and str(raw) in excluded[f"{SYMBOL} {DAYS[1]}"]
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    lake.register_duckdb(con)  # the views name gs:// objects; this session reads them
    days = con.execute(
        "SELECT DISTINCT (ts - INTERVAL 1 MILLISECOND)::DATE FROM binance_perp_klines_1m"
    ).fetchall()
    assert sorted(str(d) for (d,) in days) == [DAYS[0], DAYS[2]]
    (files,) = con.execute(
        "SELECT count(DISTINCT filename) FROM read_parquet("
        f"'{lake.day_file('bars_15m', SYMBOL, as_day(DAYS[0]))}', filename = true)"
    ).fetchone()
    assert files == 1


def test_a_missing_manifest_is_a_missing_day_and_a_rerun_restores_it(
    tmp_path: Path, instance: dg.DagsterInstance, lake_url: str
) -> None:
    res = resources(tmp_path, lake_url=lake_url)
    selection = ["binance_perp_klines_1m", "perp_klines_15m"]
    assert run_range(instance, res, DAYS[0], DAYS[-1], selection).success
    lake = Lake(lake_url)
    day = as_day(DAYS[1])
    good = lake.verify_day("binance_perp_klines_1m", SYMBOL, day)
    manifest = lake.storage.join(
        lake.day_dir("binance_perp_klines_1m", SYMBOL, day), "MANIFEST.tsv"
    )
    blob(str(manifest)).delete()
    assert day not in lake.days_present("binance_perp_klines_1m", SYMBOL)
    assert lake.read_days("binance_perp_klines_1m", SYMBOL, [day]).missing == [day]
    assert run_range(instance, res, DAYS[1], DAYS[1], selection).success  # re-fetched
    again = lake.verify_day("binance_perp_klines_1m", SYMBOL, day)
    assert again.sha256 == good.sha256  # the same bytes as before: the sandbox is deterministic
    frame = lake.read_days("perp_klines_15m", SYMBOL, [day]).frame.collect()
    assert frame.height == 96
    digest = hashlib.sha256(blob(str(again.path)).download_as_bytes()).hexdigest()
    assert digest == again.sha256
    assert pl.read_parquet(blob(str(again.path)).download_as_bytes()).height == 1440
