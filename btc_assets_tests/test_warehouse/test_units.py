"""The Dagster-free loader's pieces that need no emulator: types, the script, file checks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
import pytest

from btc_assets.core.schema import FEATURE_SCHEMA, TS
from btc_assets.warehouse.bigquery import (
    BigQueryAccessError,
    BigQueryLoadError,
    DayFileError,
    SchemaDriftError,
    TableRef,
    bq_schema,
    check_day_file,
    transaction_script,
)

DAY = date(2024, 3, 1)
SCHEMA = {"symbol": pl.String(), "ts": TS, "volume": pl.Float64(), "trades": pl.Int64()}
TARGET = TableRef("test-project", "btc", "bars_15m")


def test_contract_types_map_to_bigquery() -> None:
    types = {f.name: f.field_type for f in bq_schema(FEATURE_SCHEMA)}
    assert types["ts"] == "TIMESTAMP"
    assert types["symbol"] == types["funding_source"] == "STRING"
    assert types["close"] == types["oi_pctile_30d"] == "FLOAT64"
    assert types["oi_now_imputed"] == "BOOL"
    assert {f.mode for f in bq_schema(FEATURE_SCHEMA)} == {"NULLABLE"}
    assert bq_schema({"trades": pl.Int64()})[0].field_type == "INT64"
    assert list(types) == list(FEATURE_SCHEMA)


def test_types_without_a_safe_mapping_are_refused() -> None:
    with pytest.raises(SchemaDriftError, match="no time zone"):
        bq_schema({"ts": pl.Datetime("ms")})
    with pytest.raises(SchemaDriftError, match="no BigQuery type"):
        bq_schema({"x": pl.UInt8()})


def test_script_swaps_the_day_interval_for_one_symbol() -> None:
    staging = TARGET.sibling("_stage_bars_15m_20240301_ab12cd34")
    script = transaction_script(TARGET, staging, ["symbol", "ts", "volume"], "BTCUSDT", DAY)
    assert script.splitlines() == [
        "BEGIN TRANSACTION;",
        "DELETE FROM `test-project.btc.bars_15m` WHERE symbol = 'BTCUSDT' "
        "AND ts > TIMESTAMP '2024-03-01 00:00:00+00' AND ts <= TIMESTAMP '2024-03-02 00:00:00+00';",
        "INSERT INTO `test-project.btc.bars_15m` (`symbol`, `ts`, `volume`) SELECT `symbol`, "
        "`ts`, `volume` FROM `test-project.btc._stage_bars_15m_20240301_ab12cd34`;",
        "COMMIT TRANSACTION;",
    ]
    empty = transaction_script(TARGET, None, ["symbol"], "BTCUSDT", DAY)
    assert "INSERT" not in empty and empty.startswith("BEGIN TRANSACTION;")
    with pytest.raises(BigQueryLoadError, match="alphanumeric"):
        transaction_script(TARGET, None, ["symbol"], "BTC'; DROP", DAY)


def test_names_that_would_break_the_sql_are_refused() -> None:
    with pytest.raises(BigQueryAccessError, match="BIGQUERY_PROJECT"):
        TableRef("proj`; --", "btc", "t")
    with pytest.raises(BigQueryLoadError, match="dataset name"):
        TableRef("test-project", "bad-dataset", "t")


def _day_file(tmp_path: Path, frame: pl.DataFrame) -> Path:
    path = tmp_path / "part-20240301.parquet"
    frame.write_parquet(path)
    return path


def _frame(*moments: datetime) -> pl.DataFrame:
    n = len(moments)
    return pl.DataFrame(
        {"symbol": ["BTCUSDT"] * n, "ts": list(moments), "volume": [1.0] * n, "trades": [1] * n},
        schema=SCHEMA,
    )


def test_day_file_checks(tmp_path: Path) -> None:
    first, last = datetime(2024, 3, 1, 0, 15, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC)
    good = _frame(first, last)  # the last bar of the day is labelled D+1 00:00
    assert check_day_file(_day_file(tmp_path, good), SCHEMA, "BTCUSDT", DAY) == 2
    with pytest.raises(SchemaDriftError, match=r"missing column\(s\) \['trades'\]"):
        check_day_file(_day_file(tmp_path, good.drop("trades")), SCHEMA, "BTCUSDT", DAY)
    drifted = good.with_columns(pl.col("trades").cast(pl.Float64))
    with pytest.raises(SchemaDriftError, match="trades is Float64, contract says Int64"):
        check_day_file(_day_file(tmp_path, drifted), SCHEMA, "BTCUSDT", DAY)
    midnight = _frame(datetime(2024, 3, 1, tzinfo=UTC))  # belongs to the day before
    with pytest.raises(DayFileError, match="1 row"):
        check_day_file(_day_file(tmp_path, midnight), SCHEMA, "BTCUSDT", DAY)
    with pytest.raises(DayFileError, match="symbol != 'ETHUSDT'"):
        check_day_file(_day_file(tmp_path, good), SCHEMA, "ETHUSDT", DAY)
