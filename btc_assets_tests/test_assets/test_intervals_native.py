"""The resampled bar tables of every Binance interval equal the venue's own bars of it.

The sandbox serves ``/api/v3/klines`` and ``/fapi/v1/klines`` at any interval, aggregating
its 1m bars as the venue does (decimal sums). The pipeline builds the tables from the 1m
klines it fetched; the native bars are fetched at each interval by the same client, and the
two must agree bit for bit, labels and day partitions included.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from btc_assets.assets.bars import bar_assets
from btc_assets.assets.binance import binance_assets
from btc_assets.core.bars import BINANCE_INTERVALS, expected_source_count
from btc_assets.core.schema import KLINE_SCHEMA
from btc_assets.core.tables import PERP_1M, SPOT_1M, resampled_tables
from btc_assets.defs.resources import BinanceResource, DatasetResource
from btc_assets_tests.test_assets.helpers import resources

DAYS = [date(2024, 3, 1), date(2024, 3, 2)]
SYMBOL = "BTCUSDT"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A sandbox lake with the 1m klines and the bars of every interval over DAYS."""
    root: Path = tmp_path_factory.mktemp("intervals")
    res = resources(root)
    assets = [*binance_assets, *bar_assets(BINANCE_INTERVALS)]
    selection = [SPOT_1M.name, PERP_1M.name, *(t.name for t in resampled_tables(BINANCE_INTERVALS))]
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
    return res


@pytest.mark.parametrize("table", resampled_tables(BINANCE_INTERVALS), ids=lambda t: t.name)
def test_resampled_table_equals_the_venues_bars(built: dict[str, object], table) -> None:
    dataset, binance = built["dataset"], built["binance"]
    assert isinstance(dataset, DatasetResource) and isinstance(binance, BinanceResource)
    read = dataset.lake().read_days(table.name, SYMBOL, DAYS)
    assert sorted(read.committed) == DAYS
    ours = read.frame.sort("ts").collect()
    start = datetime(DAYS[0].year, DAYS[0].month, DAYS[0].day, tzinfo=UTC)
    end = start + timedelta(days=len(DAYS))
    with binance.client() as client:
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
