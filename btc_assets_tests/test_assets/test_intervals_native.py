"""The resampled bar tables of every Binance interval equal the venue's own bars of it.

The sandbox serves ``/api/v3/klines`` and ``/fapi/v1/klines`` at any interval, aggregating
its 1m bars as the venue does (decimal sums). The pipeline builds the tables from the 1m
klines it fetched; the native bars are fetched at each interval by the same client, and the
two must agree bit for bit, labels and day partitions included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from dagster_duckdb import DuckDBResource
from polars.testing import assert_frame_equal

from btc_assets.assets.bars import bar_assets
from btc_assets.assets.binance import binance_assets
from btc_assets.assets.duckdb_catalog import duckdb_catalog_asset
from btc_assets.core.bars import BINANCE_INTERVALS, expected_source_count
from btc_assets.core.schema import KLINE_SCHEMA
from btc_assets.core.tables import PERP_1M, SPOT_1M, Table, kline_aliases, resampled_tables
from btc_assets.defs.resources import BinanceResource, DatasetResource
from btc_assets_tests.test_assets.helpers import resources

DAYS = [date(2024, 3, 1), date(2024, 3, 2)]
SYMBOL = "BTCUSDT"


ALL_BARS = resampled_tables(BINANCE_INTERVALS)


@dataclass(frozen=True)
class Built:
    root: Path
    res: dict[str, object]
    instance: dg.DagsterInstance


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """A sandbox lake with the 1m klines and the bars of every interval over DAYS."""
    root: Path = tmp_path_factory.mktemp("intervals")
    res = resources(root)
    assets = [*binance_assets, *bar_assets(BINANCE_INTERVALS)]
    selection = [SPOT_1M.name, PERP_1M.name, *(t.name for t in ALL_BARS)]
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("home"))) as instance:
        result = dg.materialize(
            assets,
            instance=instance,
            resources=res,
            selection=selection,
            tags={
                "dagster/asset_partition_range_start": DAYS[0].isoformat(),
                "dagster/asset_partition_range_end": DAYS[-1].isoformat(),
            },
        )
        assert result.success
        yield Built(root, res, instance)


@pytest.mark.parametrize("table", ALL_BARS, ids=lambda t: t.name)
def test_resampled_table_equals_the_venues_bars(built: Built, table: Table) -> None:
    dataset, binance = built.res["dataset"], built.res["binance"]
    assert isinstance(dataset, DatasetResource) and isinstance(binance, BinanceResource)
    read = dataset.lake().read_days(table.name, SYMBOL, DAYS)
    assert sorted(read.committed) == DAYS
    ours = read.frame.sort("ts").collect()
    start = datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, tzinfo=UTC)
    end = start + timedelta(days=len(DAYS))
    with binance.client() as client:
        assert table.every is not None
        if table.source is SPOT_1M:
            native = client.spot_klines(SYMBOL, table.every, start, end)
        else:
            native = client.futures_klines(SYMBOL, table.every, start, end)
    per_day = 1440 // expected_source_count(table.every)
    assert native.height == ours.height == per_day * len(DAYS)
    assert_frame_equal(ours.select(list(KLINE_SCHEMA)), native, check_exact=True)
    assert ours["source_count"].to_list() == [expected_source_count(table.every)] * ours.height
    # Right-closed, labelled by close: the last bar of day D is D+1 00:00 and lives in D.
    last_of_first_day = dataset.lake().read_days(table.name, SYMBOL, DAYS[:1]).frame.collect()
    assert last_of_first_day["ts"].max() == start + timedelta(days=1)
    if table.every == "1d":
        assert ours["ts"].to_list() == [start + timedelta(days=i + 1) for i in range(len(DAYS))]
    assert ours.filter(pl.col("ts") <= start).is_empty()


def _catalog(built: Built, intervals: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
    """Build the DuckDB views of the raw klines and the bars of ``intervals``; read them."""
    tables = [SPOT_1M, PERP_1M, *resampled_tables(intervals)]
    asset = duckdb_catalog_asset(tables, aliases=kline_aliases(intervals))
    path = built.root / "warehouse.duckdb"
    result = dg.materialize(
        [asset], instance=built.instance, resources={**built.res, "duckdb": DuckDBResource(
            database=str(path))},
    )  # fmt: skip
    assert result.success
    return duckdb.connect(str(path), read_only=True)


def _views(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}


def test_views_for_every_interval_the_1m_alias_and_only_verified_days(built: Built) -> None:
    con = _catalog(built, BINANCE_INTERVALS)
    assert _views(con) >= {t.name for t in ALL_BARS} | {"spot_klines_1m", "perp_klines_1m"}
    for table in ALL_BARS:
        (rows,) = con.execute(f"SELECT count(*) FROM {table.name}").fetchone()  # type: ignore[misc]
        lake = built.res["dataset"].lake().read_days(table.name, SYMBOL, DAYS)  # type: ignore[attr-defined]
        assert rows == lake.frame.collect().height > 0, table.name
    alias = con.execute(
        "SELECT count(*), min(source_count), max(source_count) FROM spot_klines_1m"
    ).fetchone()
    (raw,) = con.execute("SELECT count(*) FROM binance_spot_klines_1m").fetchone()  # type: ignore[misc]
    assert alias == (raw, 1, 1) and raw == 1440 * len(DAYS)
    con.close()

    # A 4h day file that no longer matches its manifest leaves that view, not the others.
    lake = built.res["dataset"].lake()  # type: ignore[attr-defined]
    bad = lake.day_file("spot_klines_4h", SYMBOL, DAYS[1])
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[:-8] + bytes(8))
    try:
        con = _catalog(built, BINANCE_INTERVALS)
        days = con.execute(
            "SELECT DISTINCT (ts - INTERVAL 1 MILLISECOND)::DATE FROM spot_klines_4h"
        ).fetchall()
        assert [d for (d,) in days] == [DAYS[0]]
        (rows,) = con.execute("SELECT count(*) FROM perp_klines_4h").fetchone()  # type: ignore[misc]
        assert rows == 6 * len(DAYS)
        con.close()
    finally:
        bad.write_bytes(good_bytes)

    # Intervals dropped from the configuration lose their views; 15m stays (bars_15m).
    con = _catalog(built, ("1h",))
    views = _views(con)
    assert {"spot_klines_15m", "perp_klines_15m", "spot_klines_1h", "perp_klines_1h"} <= views
    assert not views & {"spot_klines_1m", "spot_klines_4h", "perp_klines_1d", "spot_klines_3m"}
    con.close()
