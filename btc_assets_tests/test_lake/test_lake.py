from __future__ import annotations

import os
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btc_assets.core.schema import KLINE_SCHEMA, empty_frame
from btc_assets.lake import SUPERSEDED_GRACE, DayWrite, Lake, LakeCorruptionError, LakeError
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


def test_rerun_is_byte_identical(tmp_path: Path, day_frame: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    first = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    before = snapshot(first.path.parent)
    shuffled = day_frame.sample(fraction=1.0, shuffle=True, seed=11)
    second = lake.write_day(TABLE, SYMBOL, DAY, shuffled)
    assert snapshot(first.path.parent) == before
    assert second == first


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


def test_readers_never_see_a_file_and_manifest_of_different_writes(
    tmp_path: Path, day_frame: pl.DataFrame
) -> None:
    """A reader beside a writer of the same day: every read verifies, whole and consistent."""
    import threading

    lake = Lake(tmp_path)
    versions = [day_frame, day_frame.head(720)]
    lake.write_day(TABLE, SYMBOL, DAY, versions[0])
    stop, seen, problems = threading.Event(), set(), []

    def read() -> None:
        while not stop.is_set():
            result = lake.read_days(TABLE, SYMBOL, [DAY])
            if result.errors or result.missing:
                problems.append(result.errors or result.missing)
            else:
                seen.add(result.frame.collect().height)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(60):
            lake.write_day(TABLE, SYMBOL, DAY, versions[i % 2])
    finally:
        stop.set()
        reader.join()
    assert problems == []
    assert seen <= {1440, 720} and seen


def test_superseded_files_and_stale_temps_are_swept_after_their_grace(
    tmp_path: Path, day_frame: pl.DataFrame
) -> None:
    lake = Lake(tmp_path)
    old = lake.write_day(TABLE, SYMBOL, DAY, day_frame).path
    new = lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10)).path
    directory = old.parent
    stale_tmp = directory / ".part-20240921.parquet.123.abcd.tmp"
    stale_tmp.write_bytes(b"half")
    assert old.exists()  # superseded just now: kept for readers holding its path
    assert {p.name for p in lake.uncommitted_files(TABLE, SYMBOL)[DAY]} == {
        old.name,
        stale_tmp.name,
    }
    past = time.time() - SUPERSEDED_GRACE.total_seconds() - 60
    for path in (old, stale_tmp):
        os.utime(path, (past, past))
    lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10))
    assert not old.exists() and not stale_tmp.exists() and new.exists()
    assert lake.uncommitted_files(TABLE, SYMBOL) == {}


def test_flipped_byte_detected_with_path(tmp_path: Path, day_frame: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    path = lake.write_day(TABLE, SYMBOL, DAY, day_frame).path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LakeCorruptionError, match="sha256 mismatch") as err:
        lake.verify_day(TABLE, SYMBOL, DAY)
    assert str(path) in str(err.value)
    assert not readable(lake)


def test_truncated_file_detected_with_path(tmp_path: Path, day_frame: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    written = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    with written.path.open("r+b") as fh:
        fh.truncate(written.bytes - 100)
    with pytest.raises(LakeCorruptionError, match="size mismatch") as err:
        lake.verify_day(TABLE, SYMBOL, DAY)
    assert str(written.path) in str(err.value)
    assert f"{written.bytes} bytes" in str(err.value)


@pytest.mark.parametrize("victim", ["MANIFEST.tsv", "_SUCCESS", "data"])
def test_missing_piece_detected(tmp_path: Path, day_frame: pl.DataFrame, victim: str) -> None:
    lake = Lake(tmp_path)
    written = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    victim = written.path.name if victim == "data" else victim
    (lake.day_dir(TABLE, SYMBOL, DAY) / victim).unlink()
    with pytest.raises(LakeCorruptionError, match="missing") as err:
        lake.verify_day(TABLE, SYMBOL, DAY)
    assert victim in str(err.value)
    assert not readable(lake)


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


def test_read_days_is_one_lazy_scan_of_verified_days(
    tmp_path: Path, day_frame: pl.DataFrame
) -> None:
    lake = Lake(tmp_path)
    days = [DAY + timedelta(days=i) for i in range(4)]
    for i, day in enumerate(days):
        if i != 2:
            lake.write_day(TABLE, SYMBOL, day, shifted(day_frame, i))
    window = days[:3]
    read = lake.read_days(TABLE, SYMBOL, window, schema=KLINE_SCHEMA)
    lf = read.frame
    assert isinstance(lf, pl.LazyFrame)
    assert (sorted(read.committed), read.missing, read.errors) == (
        [days[0], days[1]],
        [days[2]],
        {},
    )
    plan = lf.explain()
    assert plan.count("SCAN") == 1  # one multi-file scan, not a union of per-day reads
    assert "part-20240921" in plan and "part-20240922" in plan
    out = lf.collect()
    assert out.height == 2 * 1440
    assert out.schema == pl.Schema(KLINE_SCHEMA)
    assert out["ts"].is_sorted()
    assert lake.missing_days(TABLE, SYMBOL, window) == [days[2]]
    assert lake.days_present(TABLE, SYMBOL) == [days[0], days[1], days[3]]


def test_read_of_nothing_has_the_given_schema(tmp_path: Path) -> None:
    lf = Lake(tmp_path).read_days(TABLE, SYMBOL, [DAY], schema=KLINE_SCHEMA).frame
    assert lf.collect().schema == pl.Schema(KLINE_SCHEMA)
    assert Lake(tmp_path).read_days(TABLE, SYMBOL, []).frame.collect().is_empty()


def test_read_days_leaves_out_a_corrupt_day_and_names_it(
    tmp_path: Path, day_frame: pl.DataFrame
) -> None:
    lake = Lake(tmp_path)
    lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    bad = lake.write_day(TABLE, SYMBOL, DAY + timedelta(days=1), shifted(day_frame, 1)).path
    bad.write_bytes(bad.read_bytes()[:-200])  # truncated
    read = lake.read_days(TABLE, SYMBOL, [DAY, DAY + timedelta(days=1)], schema=KLINE_SCHEMA)
    assert list(read.committed) == [DAY]
    assert str(bad) in read.errors[DAY + timedelta(days=1)]
    assert read.frame.collect().height == 1440


def test_tables(tmp_path: Path, day_frame: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    assert lake.tables() == []
    lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    lake.write_day("bars_15m", SYMBOL, DAY, day_frame.head(3))
    lake.write_day(TABLE, "ETHUSDT", DAY, day_frame.with_columns(symbol=pl.lit("ETHUSDT")))
    assert lake.tables() == ["bars_15m", TABLE]


def test_last_ts_skips_a_corrupt_newest_day(tmp_path: Path, day_frame: pl.DataFrame) -> None:
    lake = Lake(tmp_path)
    assert lake.last_ts("klines", "BTCUSDT") is None
    lake.write_day("klines", "BTCUSDT", DAY, day_frame)
    lake.write_day("klines", "BTCUSDT", DAY + timedelta(days=1), shifted(day_frame, 1))
    assert lake.last_ts("klines", "BTCUSDT") == shifted(day_frame, 1)["ts"].max()
    newest = lake.day_file("klines", "BTCUSDT", DAY + timedelta(days=1))
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    assert lake.last_ts("klines", "BTCUSDT") == day_frame["ts"].max()
