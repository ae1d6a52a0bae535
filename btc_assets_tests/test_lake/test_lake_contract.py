"""The lake's promises on both backends: a local folder and GCS (the emulator, with GCS's
generation preconditions enforced; see gcs_preconditions.py).

Damage is done from outside the lake's code: files directly on disk, objects through Google's
own client, as an operator, a bug elsewhere or a half-finished copy would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from btc_assets.core.schema import KLINE_SCHEMA, empty_frame
from btc_assets.lake import (
    SUPERSEDED_GRACE,
    Lake,
    LakeCommitConflict,
    LakeCorruptionError,
    LakeError,
)
from btc_assets.lake.storage import Location
from btc_assets_tests.emulators import GcsEmulator
from btc_assets_tests.gcs_lake import blob, fresh_url, raw_read, raw_remove, raw_write
from btc_assets_tests.test_core.test_bars import fixture_klines

TABLE, SYMBOL = "klines_1m", "BTCUSDT"
DAY = date(2024, 9, 21)


@dataclass
class Backend:
    """A lake factory and raw access to what it stores, for one backend."""

    kind: str
    new_root: Callable[[], Path | str]

    def lake(self) -> Lake:
        return Lake(self.new_root())

    def read(self, location: Location) -> bytes:
        return raw_read(location)

    def overwrite(self, location: Location, data: bytes) -> None:
        """Replace a stored file's bytes, as a stray copy or a bug would (no lake metadata)."""
        raw_write(location, data)

    def remove(self, location: Location) -> None:
        raw_remove(location)

    def names(self, lake: Lake, directory: Location) -> list[str]:
        return [f.name for f in lake.storage.files(directory)]

    def age(self, lake: Lake, location: Location, seconds: float) -> None:
        """Make a file look ``seconds`` older than now to the sweep."""
        past = time.time() - seconds
        if self.kind == "local":
            import os

            os.utime(location, (past, past))
        else:
            lake.storage.fs.setxattrs(str(location).removeprefix("gs://"), superseded_at=str(past))  # type: ignore[attr-defined]


@pytest.fixture(params=["local", "gcs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        counter = iter(range(1000))
        yield Backend("local", lambda: tmp_path / f"lake{next(counter)}")
    else:
        request.getfixturevalue("gcs_server")
        yield Backend("gcs", fresh_url)


@pytest.fixture(scope="module")
def day_frame() -> pl.DataFrame:
    return fixture_klines()


def shifted(df: pl.DataFrame, days: int) -> pl.DataFrame:
    return df.with_columns(pl.col("ts") + timedelta(days=days))


def readable(lake: Lake, day: date = DAY) -> bool:
    return day in lake.read_days(TABLE, SYMBOL, [day]).committed


def test_layout_round_trip_and_provenance(backend: Backend, day_frame: pl.DataFrame) -> None:
    lake = backend.lake()
    provenance = {"env": "sandbox", "origin": "http://x/api", "closed": True}
    written = lake.write_day(TABLE, SYMBOL, DAY, day_frame.reverse(), provenance)
    directory = lake.day_dir(TABLE, SYMBOL, DAY)
    assert str(directory) == f"{lake.url}/{TABLE}/{SYMBOL}/y=2024/m=09/d=21"
    name = f"part-20240921-{written.sha256[:16]}.parquet"
    assert written.name == name and written.path == lake.day_file(TABLE, SYMBOL, DAY)
    assert backend.names(lake, directory) == ["MANIFEST.tsv", "_SUCCESS", name]
    manifest = lake.storage.join(directory, "MANIFEST.tsv")
    assert backend.read(manifest).decode() == (
        "file\trows\tbytes\tsha256\tprovenance\n"
        f"{name}\t1440\t{written.bytes}\t{written.sha256}\t"
        '{"closed":true,"env":"sandbox","origin":"http://x/api"}\n'
    )
    assert len(backend.read(written.path)) == written.bytes
    assert lake.verify_day(TABLE, SYMBOL, DAY) == written
    assert lake.verify_day(TABLE, SYMBOL, DAY).provenance == provenance
    read = lake.read_days(TABLE, SYMBOL, [DAY], schema=KLINE_SCHEMA)
    assert read.frame.collect().equals(day_frame)  # sorted back, dtypes kept


def test_rerun_is_byte_identical(backend: Backend, day_frame: pl.DataFrame) -> None:
    lake = backend.lake()
    first = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    directory = lake.day_dir(TABLE, SYMBOL, DAY)
    before = {
        n: backend.read(lake.storage.join(directory, n)) for n in backend.names(lake, directory)
    }
    second = lake.write_day(
        TABLE, SYMBOL, DAY, day_frame.sample(fraction=1.0, shuffle=True, seed=3)
    )
    after = {
        n: backend.read(lake.storage.join(directory, n)) for n in backend.names(lake, directory)
    }
    assert second == first and after == before


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 1440))
def test_identical_input_identical_bytes_on_both_backends(
    tmp_path: Path, gcs_server: GcsEmulator, day_frame: pl.DataFrame, seed: int, n: int
) -> None:
    part = day_frame.sample(n=n, seed=seed)
    local = Lake(tmp_path / f"l{seed}-{n}").write_day(TABLE, SYMBOL, DAY, part)
    remote = Lake(fresh_url()).write_day(TABLE, SYMBOL, DAY, part.reverse())
    assert Path(local.path).read_bytes() == blob(str(remote.path)).download_as_bytes()
    assert local.name == remote.name


def test_a_writer_that_dies_before_its_commit_leaves_the_previous_day(
    backend: Backend, day_frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = backend.lake()
    first = lake.write_day(TABLE, SYMBOL, DAY, day_frame)

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("injected crash between the data upload and the commit")

    monkeypatch.setattr(lake.storage, "commit", crash)
    with pytest.raises(OSError, match="injected"):
        lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10))
    monkeypatch.undo()
    assert lake.verify_day(TABLE, SYMBOL, DAY) == first
    assert lake.read_days(TABLE, SYMBOL, [DAY]).frame.collect().height == 1440
    (orphan,) = lake.uncommitted_files(TABLE, SYMBOL)[DAY]
    second = lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10))  # a re-run commits it
    assert str(second.path) == str(orphan)
    assert lake.verify_day(TABLE, SYMBOL, DAY).rows == 10


def test_readers_never_see_a_file_and_manifest_of_different_writes(
    backend: Backend, day_frame: pl.DataFrame
) -> None:
    lake = backend.lake()
    versions = [day_frame, day_frame.head(720)]
    lake.write_day(TABLE, SYMBOL, DAY, versions[0])
    stop, seen, problems = threading.Event(), set(), []

    def read() -> None:
        reader = Lake(lake.url)  # its own session, as another process would have
        while not stop.is_set():
            result = reader.read_days(TABLE, SYMBOL, [DAY])
            if result.errors or result.missing:
                problems.append(result.errors or result.missing)
            else:
                seen.add(result.frame.collect().height)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for i in range(30):
            lake.write_day(TABLE, SYMBOL, DAY, versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert problems == []
    assert seen <= {1440, 720} and seen


def test_a_stale_commit_is_refused_by_the_backend(
    backend: Backend, day_frame: pl.DataFrame
) -> None:
    """The primitive under the race: a commit against a version that is no longer current."""
    lake = backend.lake()
    lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    directory = lake.day_dir(TABLE, SYMBOL, DAY)
    manifest = lake.storage.join(directory, "MANIFEST.tsv")
    text, version = lake.storage.read_manifest(manifest)
    lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(5))  # somebody else commits meanwhile
    with pytest.raises(LakeCommitConflict, match="another writer"):
        lake.storage.commit(manifest, text, version)
    assert lake.verify_day(TABLE, SYMBOL, DAY).rows == 5  # the refused commit changed nothing
    with pytest.raises(LakeCommitConflict):
        lake.storage.commit(manifest, text, None)  # "must not exist" on an existing day


def test_the_loser_of_a_commit_race_retries_and_the_day_is_one_writers_whole(
    backend: Backend, day_frame: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writer A reads the day's version, then B commits, then A commits: A's commit is refused
    (not interleaved), A re-reads and commits again, and the day is A's file, whole."""
    lake_a, root = backend.lake(), None
    root = lake_a.url
    lake_b = Lake(root)
    lake_a.write_day(TABLE, SYMBOL, DAY, day_frame)
    real_commit = lake_a.storage.commit
    outcomes: list[str] = []

    def commit_after_b(location: Location, text: str, expected: object) -> None:
        if not outcomes:
            lake_b.write_day(TABLE, SYMBOL, DAY, day_frame.head(100))  # B wins the race
        try:
            real_commit(location, text, expected)
            outcomes.append("committed")
        except LakeCommitConflict:
            outcomes.append("refused")
            raise

    monkeypatch.setattr(lake_a.storage, "commit", commit_after_b)
    mine = lake_a.write_day(TABLE, SYMBOL, DAY, day_frame.head(200))
    assert outcomes == ["refused", "committed"]
    final = Lake(root).verify_day(TABLE, SYMBOL, DAY)
    assert final == mine and final.rows == 200
    assert Lake(root).read_days(TABLE, SYMBOL, [DAY]).frame.collect().height == 200


def test_concurrent_writers_of_one_day_never_leave_a_mixed_day(
    backend: Backend, day_frame: pl.DataFrame
) -> None:
    lake = backend.lake()
    frames = [day_frame.head(100 * (i + 1)) for i in range(4)]
    start = threading.Barrier(len(frames))
    failures: list[BaseException] = []

    def write(frame: pl.DataFrame) -> None:
        writer = Lake(lake.url)
        start.wait()
        try:
            for _ in range(5):
                writer.write_day(TABLE, SYMBOL, DAY, frame)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    final = lake.verify_day(TABLE, SYMBOL, DAY)
    assert final.rows in {f.height for f in frames}
    out = lake.read_days(TABLE, SYMBOL, [DAY]).frame.collect()
    assert out.equals(next(f for f in frames if f.height == final.rows))


def test_superseded_files_and_stale_orphans_are_swept_after_their_grace(
    backend: Backend, day_frame: pl.DataFrame
) -> None:
    lake = backend.lake()
    old = lake.write_day(TABLE, SYMBOL, DAY, day_frame).path
    new = lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10)).path
    directory = lake.day_dir(TABLE, SYMBOL, DAY)
    orphan = lake.storage.put_data(directory, "part-20240921-0000000000000000.parquet", b"x", "0")
    assert {lake.storage.name(p) for p in lake.uncommitted_files(TABLE, SYMBOL)[DAY]} == {
        lake.storage.name(old),
        lake.storage.name(orphan),
    }
    lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10))
    assert lake.storage.exists(old) and lake.storage.exists(orphan)  # within their grace
    for location in (old, orphan):
        backend.age(lake, location, SUPERSEDED_GRACE.total_seconds() + 60)
    lake.write_day(TABLE, SYMBOL, DAY, day_frame.head(10))
    assert not lake.storage.exists(old) and not lake.storage.exists(orphan)
    assert lake.storage.exists(new) and lake.uncommitted_files(TABLE, SYMBOL) == {}


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated", "other_valid_parquet"])
def test_a_corrupt_object_is_detected_named_and_never_read(
    backend: Backend, day_frame: pl.DataFrame, damage: str
) -> None:
    lake = backend.lake()
    lake.write_day(TABLE, SYMBOL, DAY - timedelta(days=1), shifted(day_frame, -1))
    written = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    data = backend.read(written.path)
    if damage == "flipped_byte":
        broken = bytearray(data)
        broken[len(broken) // 2] ^= 0xFF
        data = bytes(broken)
    elif damage == "truncated":
        data = data[:-100]
    else:  # a valid Parquet file of other rows, under the committed name
        other = Lake(backend.new_root()).write_day(TABLE, SYMBOL, DAY, day_frame.head(1440 - 1))
        data = backend.read(other.path)
    backend.overwrite(written.path, data)
    with pytest.raises(LakeCorruptionError, match="mismatch") as err:
        lake.verify_day(TABLE, SYMBOL, DAY)
    assert str(written.path) in str(err.value)
    read = lake.read_days(TABLE, SYMBOL, [DAY - timedelta(days=1), DAY])
    assert list(read.committed) == [DAY - timedelta(days=1)]
    assert str(written.path) in read.errors[DAY]
    assert read.frame.collect().height == 1440  # the good day only
    assert lake.last_ts(TABLE, SYMBOL) == shifted(day_frame, -1)["ts"].max()


@pytest.mark.parametrize("victim", ["MANIFEST.tsv", "_SUCCESS", "data"])
def test_a_missing_piece_is_detected(
    backend: Backend, day_frame: pl.DataFrame, victim: str
) -> None:
    lake = backend.lake()
    written = lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    directory = lake.day_dir(TABLE, SYMBOL, DAY)
    target = written.path if victim == "data" else lake.storage.join(directory, victim)
    backend.remove(target)
    if victim == "MANIFEST.tsv":  # no manifest: the day was never committed
        assert lake.days_present(TABLE, SYMBOL) == []
        assert lake.read_days(TABLE, SYMBOL, [DAY]).missing == [DAY]
    with pytest.raises(LakeCorruptionError, match="missing") as err:
        lake.verify_day(TABLE, SYMBOL, DAY)
    assert (written.name if victim == "data" else victim) in str(err.value)
    assert not readable(lake)


def test_a_garbled_manifest_is_not_a_day(backend: Backend, day_frame: pl.DataFrame) -> None:
    lake = backend.lake()
    lake.write_day(TABLE, SYMBOL, DAY, day_frame)
    manifest = lake.storage.join(lake.day_dir(TABLE, SYMBOL, DAY), "MANIFEST.tsv")
    backend.overwrite(manifest, b"file\trows\n")
    with pytest.raises(LakeCorruptionError, match="bad header"):
        lake.verify_day(TABLE, SYMBOL, DAY)
    assert DAY in lake.read_days(TABLE, SYMBOL, [DAY]).errors
    lake.write_day(TABLE, SYMBOL, DAY, day_frame)  # a re-run repairs it (commits over it)
    assert readable(lake)


def test_bad_rows_are_refused_and_nothing_is_written(
    backend: Backend, day_frame: pl.DataFrame
) -> None:
    lake = backend.lake()
    late = day_frame.tail(2).with_columns(pl.col("ts") + timedelta(minutes=1))
    with pytest.raises(LakeError, match=r"klines_1m 2024-09-21.*2024-09-22 00:01:00"):
        lake.write_day(TABLE, SYMBOL, DAY, late)
    with pytest.raises(LakeError, match="ETHUSDT"):
        lake.write_day(TABLE, SYMBOL, DAY, day_frame.with_columns(symbol=pl.lit("ETHUSDT")))
    assert lake.tables() == [] and lake.days_present(TABLE, SYMBOL) == []


def test_empty_days_tables_and_scans(backend: Backend, day_frame: pl.DataFrame) -> None:
    lake = backend.lake()
    assert lake.tables() == [] and lake.last_ts(TABLE, SYMBOL) is None
    days = [DAY + timedelta(days=i) for i in range(4)]
    for i, day in enumerate(days):
        if i == 1:
            lake.write_day(TABLE, SYMBOL, day, empty_frame(KLINE_SCHEMA))
        elif i != 2:
            lake.write_day(TABLE, SYMBOL, day, shifted(day_frame, i))
    lake.write_day("bars_15m", SYMBOL, DAY, day_frame.head(3))
    assert lake.tables() == ["bars_15m", TABLE]
    read = lake.read_days(TABLE, SYMBOL, days[:3], schema=KLINE_SCHEMA)
    assert (sorted(read.committed), read.missing, read.errors) == (
        [days[0], days[1]],
        [days[2]],
        {},
    )
    out = read.frame.collect()
    assert out.height == 1440 and out.schema == pl.Schema(KLINE_SCHEMA)
    assert read.frame.explain().count("SCAN") == 1  # one scan (deferred on GCS: downloads)
    assert lake.missing_days(TABLE, SYMBOL, days) == [days[2]]
    assert lake.days_present(TABLE, SYMBOL) == [days[0], days[1], days[3]]
    assert lake.last_ts(TABLE, SYMBOL) == shifted(day_frame, 3)["ts"].max()
    nothing = lake.read_days(TABLE, "ETHUSDT", [DAY], schema=KLINE_SCHEMA)
    assert nothing.missing == [DAY] and nothing.frame.collect().schema == pl.Schema(KLINE_SCHEMA)
