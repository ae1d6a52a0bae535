"""The local lake's own guarantees (fsync and rename, legacy manifests, writer options); what
holds on both backends, local and GCS, is in test_lake_contract.py."""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btc_assets.core.schema import KLINE_SCHEMA, empty_frame
from btc_assets.lake import DayWrite, Lake, LakeCorruptionError, LakeError
from btc_assets_tests.test_core.test_bars import fixture_klines

TABLE, SYMBOL = "klines_1m", "BTCUSDT"
DAY = date(2024, 9, 21)


@pytest.fixture(scope="module")
def day_frame() -> pl.DataFrame:
    return fixture_klines()


def shifted(df: pl.DataFrame, days: int) -> pl.DataFrame:
    return df.with_columns(pl.col("ts") + timedelta(days=days))


def readable(lake: Lake) -> bool:
    """Does the lake's one read return the day (it verifies)?"""
    return DAY in lake.read_days(TABLE, SYMBOL, [DAY]).committed


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_layout_and_round_trip(tmp_path: Path, day_frame: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    provenance = {"env": "sandbox", "origin": "http://x/api", "closed": True}
    written = lake.write_day(TABLE, SYMBOL, DAY, day_frame.reverse(), provenance)
    expected_dir = tmp_path / TABLE / SYMBOL / "y=2024" / "m=09" / "d=21"
    name = f"part-20240921-{written.sha256[:16]}.parquet"
    assert written.path == expected_dir / name == lake.day_file(TABLE, SYMBOL, DAY)
    assert sorted(os.listdir(expected_dir)) == ["MANIFEST.tsv", "_SUCCESS", name]
    assert (expected_dir / "_SUCCESS").read_bytes() == b""
    assert (expected_dir / "MANIFEST.tsv").read_text() == (
        "file\trows\tbytes\tsha256\tprovenance\n"
        f"{name}\t1440\t{written.bytes}\t{written.sha256}\t"
        '{"closed":true,"env":"sandbox","origin":"http://x/api"}\n'
    )
    assert (written.rows, written.bytes) == (1440, written.path.stat().st_size)
    assert lake.verify_day(TABLE, SYMBOL, DAY) == written
    assert lake.verify_day(TABLE, SYMBOL, DAY).provenance == provenance
    assert readable(lake)
    back = pl.read_parquet(written.path)
    assert back.equals(day_frame)  # sorted back into (symbol, ts) order, dtypes kept


def test_legacy_manifest_without_provenance_still_verifies(
    tmp_path: Path, day_frame: pl.DataFrame
) -> None:
    lake = Lake(tmp_path)
    written = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    legacy = written.path.with_name("part-20240921.parquet")
    written.path.rename(legacy)
    (legacy.parent / "MANIFEST.tsv").write_text(
        f"file\trows\tbytes\tsha256\n{legacy.name}\t1440\t{written.bytes}\t{written.sha256}\n"
    )
    again = lake.verify_day(TABLE, SYMBOL, DAY)
    assert (again.path, again.provenance) == (legacy, {})


def test_parquet_writer_options(tmp_path: Path, day_frame: pl.DataFrame) -> None:
    import pyarrow.parquet as pq

    path = Lake(tmp_path).write_day(TABLE, SYMBOL, DAY, day_frame).path
    column = pq.read_metadata(path).row_group(0).column(0)
    assert column.compression == "ZSTD"
    assert column.is_stats_set
    assert column.has_dictionary_page


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 1440))
def test_identical_input_identical_bytes(
    tmp_path: Path, day_frame: pl.DataFrame, seed: int, n: int
) -> None:
    part = day_frame.sample(n=n, seed=seed)
    a = Lake(tmp_path / f"a{seed}-{n}").write_day(TABLE, SYMBOL, DAY, part)
    b = Lake(tmp_path / f"b{seed}-{n}").write_day(TABLE, SYMBOL, DAY, part.reverse())
    assert a.path.read_bytes() == b.path.read_bytes()


@pytest.mark.parametrize("failing", ["data", "manifest_write"])
def test_failed_write_leaves_previous_day_intact(
    tmp_path: Path, day_frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    lake = Lake(tmp_path)
    first = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    directory = lake.day_dir(TABLE, SYMBOL, DAY)
    before = snapshot(directory)
    real_replace, real_fsync = os.replace, os.fsync
    fsync_calls: list[int] = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if failing == "data" and str(dst).endswith(".parquet"):
            raise OSError("injected crash between temp write and rename")
        real_replace(src, dst)

    def fsync(fd: int) -> None:
        fsync_calls.append(fd)
        if failing == "manifest_write" and len(fsync_calls) == 2:
            raise OSError("injected crash while writing the manifest")
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="injected"):
        lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10))
    monkeypatch.undo()

    assert lake.verify_day(TABLE, SYMBOL, DAY) == first  # the previous day is still the day
    after = snapshot(directory)
    assert {k: after[k] for k in before} == before  # nothing committed changed
    assert not list(directory.glob("*.tmp"))
    extra = set(after) - set(before)  # at most the new data file, named by nothing
    assert {p.name for p in lake.uncommitted_files(TABLE, SYMBOL).get(DAY, [])} == extra


def test_crash_between_data_and_manifest_rename_keeps_the_previous_day(
    tmp_path: Path, day_frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path)
    first = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(dst).endswith("MANIFEST.tsv"):
            raise OSError("injected crash after the data rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10))
    monkeypatch.undo()
    # The data file is in place under its own name, but the day is still the previous one.
    assert lake.verify_day(TABLE, SYMBOL, DAY) == first
    assert lake.read_days(TABLE, SYMBOL, [DAY]).frame.collect().height == 1440
    assert not list(lake.day_dir(TABLE, SYMBOL, DAY).glob("*.tmp"))
    (orphan,) = lake.uncommitted_files(TABLE, SYMBOL)[DAY]
    second = lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10))  # a re-run commits it
    assert second.path == orphan
    assert lake.verify_day(TABLE, SYMBOL, DAY).rows == 10


def test_unreadable_parquet_that_matches_its_manifest(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    written = lake.write_day(TABLE, SYMBOL, DAY, empty_frame(KLINE_SCHEMA))
    written.path.write_bytes(b"not a parquet file")
    import hashlib

    fake = DayWrite(written.path, 0, 18, hashlib.sha256(b"not a parquet file").hexdigest())
    manifest = written.path.parent / "MANIFEST.tsv"
    manifest.write_text(f"file\trows\tbytes\tsha256\n{fake.path.name}\t0\t18\t{fake.sha256}\n")
    with pytest.raises(LakeCorruptionError, match="unreadable parquet"):
        lake.verify_day(TABLE, SYMBOL, DAY)


def test_rows_outside_the_day_or_symbol_are_rejected(
    tmp_path: Path, day_frame: pl.DataFrame
) -> None:
    lake = Lake(tmp_path)
    late = day_frame.tail(2).with_columns(pl.col("ts") + timedelta(minutes=1))  # 00:00, 00:01
    with pytest.raises(LakeError, match=r"klines_1m 2024-09-21.*2024-09-22 00:01:00") as err:
        lake.write_day(TABLE, SYMBOL, DAY, late)
    assert "1 row(s)" in str(err.value)
    midnight = day_frame.with_columns(pl.col("ts") - timedelta(minutes=1)).head(1)
    with pytest.raises(LakeError, match="2024-09-21 00:00:00"):
        lake.write_day(TABLE, SYMBOL, DAY, midnight)  # D 00:00 belongs to the day before
    with pytest.raises(LakeError, match="ETHUSDT"):
        lake.write_day(TABLE, SYMBOL, DAY, day_frame.with_columns(symbol=pl.lit("ETHUSDT")))
    with pytest.raises(LakeError, match="ts must be"):
        lake.write_day(TABLE, SYMBOL, DAY, day_frame.with_columns(pl.col("ts").cast(pl.Int64)))
    assert not lake.day_dir(TABLE, SYMBOL, DAY).exists() or not any(
        lake.day_dir(TABLE, SYMBOL, DAY).iterdir()
    )


def test_empty_day_is_legal_and_keeps_schema(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    written = lake.write_day(TABLE, SYMBOL, DAY, empty_frame(KLINE_SCHEMA))
    assert written.rows == 0
    assert readable(lake)
    assert pl.read_parquet(written.path).schema == pl.Schema(KLINE_SCHEMA)


def test_read_of_nothing_has_the_given_schema(tmp_path: Path) -> None:
    lf = Lake(tmp_path).read_days(TABLE, SYMBOL, [DAY], schema=KLINE_SCHEMA).frame
    assert lf.collect().schema == pl.Schema(KLINE_SCHEMA)
    assert Lake(tmp_path).read_days(TABLE, SYMBOL, []).frame.collect().is_empty()
