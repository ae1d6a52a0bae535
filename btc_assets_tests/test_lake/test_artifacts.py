"""Versioned artifacts: content-named, atomic, verified on every read; on a local folder and on
GCS (the emulator, generation preconditions enforced: gcs_preconditions.py).

Damage is done from outside the store's code: files on disk, objects through Google's client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from btc_assets.artifacts import (
    Artifact,
    ArtifactCorruptionError,
    ArtifactError,
    ArtifactPromoteConflict,
    ArtifactStore,
)
from btc_assets.lake import Lake, LakeCommitConflict
from btc_assets.lake.storage import Location
from btc_assets_tests.gcs_lake import blob, fresh_url, raw_read, raw_remove, raw_write


@dataclass
class Backend:
    """A fresh lake root per test, and raw access to what a store keeps there."""

    kind: str
    root: Path | str

    def store(self, kind: str = "models") -> ArtifactStore:
        return ArtifactStore(self.root, kind)  # type: ignore[arg-type]

    def at(self, *parts: str) -> Location:
        if isinstance(self.root, Path):
            return self.root.joinpath(*parts)
        return "/".join([self.root, *parts])

    def read(self, location: Location) -> bytes:
        return raw_read(location)

    def write(self, location: Location, data: bytes) -> None:
        """Replace or create a stored file's bytes (no store metadata), as a bug would."""
        raw_write(location, data)

    def remove(self, location: Location) -> None:
        raw_remove(location)


@pytest.fixture(params=["local", "gcs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        yield Backend("local", tmp_path)
    else:
        request.getfixturevalue("gcs_server")
        yield Backend("gcs", fresh_url())


def test_a_version_is_named_by_its_content_and_recommitting_changes_nothing(
    backend: Backend,
) -> None:
    store = backend.store()
    first = store.commit("m", {"a.bin": b"alpha", "card.json": b"{}"})
    again = store.commit("m", {"card.json": b"{}", "a.bin": b"alpha"})
    assert again.version == first.version and again.sha256 == first.sha256
    other = store.commit("m", {"a.bin": b"beta", "card.json": b"{}"})
    assert other.version != first.version
    assert store.versions("m") == [first.version, other.version]
    assert first.read_bytes("a.bin") == b"alpha"
    assert store.current("m") is None  # committing does not promote


def test_the_layout_is_the_same_on_both_backends(backend: Backend) -> None:
    artifact = backend.store().commit("m", {"a.bin": b"alpha"})
    directory = backend.at("models", "m", artifact.version)
    assert str(artifact.directory) == str(directory)
    assert str(artifact.path("a.bin")) == str(backend.at("models", "m", artifact.version, "a.bin"))
    manifest = backend.read(backend.at("models", "m", artifact.version, "MANIFEST.tsv"))
    sha = "8ed3f6ad685b959ead7022518e1af76cd816f8e8ec7ccdda1ed4018e8f2223f8"
    assert manifest == f"file\tbytes\tsha256\na.bin\t5\t{sha}\n".encode()
    assert backend.read(backend.at("models", "m", artifact.version, "_SUCCESS")) == b""
    assert backend.read(artifact.path("a.bin")) == b"alpha"
    if isinstance(directory, Path):
        assert directory.is_dir() and isinstance(artifact.directory, Path)
    else:
        assert str(artifact.directory).startswith("gs://")


def test_promote_moves_the_pointer_and_read_current_verifies(backend: Backend) -> None:
    store = backend.store()
    v1 = store.commit("m", {"a.bin": b"one"}).version
    v2 = store.commit("m", {"a.bin": b"two"}).version
    assert store.promote("m", v1) is None
    assert store.read_current("m").version == v1  # type: ignore[union-attr]
    assert store.promote("m", v2) == v1
    assert store.current("m") == v2
    assert backend.read(backend.at("models", "m", "CURRENT")) == f"{v2}\n".encode()
    # another process (pod) opening the same root sees the same pointer
    assert backend.store().read_current("m").read_bytes("a.bin") == b"two"  # type: ignore[union-attr]
    if isinstance(backend.root, Path):
        assert not [p for p in (backend.root / "models" / "m").iterdir() if p.name.startswith(".")]


DAMAGES: list[tuple[str, Callable[[Backend, Artifact], None], str, str]] = [
    ("rewritten", lambda b, a: b.write(a.path("a.bin"), b"ONE"), "sha256 mismatch", "a.bin"),
    ("longer", lambda b, a: b.write(a.path("a.bin"), b"longer"), "size mismatch", "a.bin"),
    ("file gone", lambda b, a: b.remove(a.path("a.bin")), "missing", "a.bin"),
    ("marker gone", lambda b, a: b.remove(b.at("models", "m", a.version, "_SUCCESS")),
     "marker missing", "_SUCCESS"),
    ("manifest gone", lambda b, a: b.remove(b.at("models", "m", a.version, "MANIFEST.tsv")),
     "manifest missing", "MANIFEST.tsv"),
    ("manifest junk", lambda b, a: b.write(b.at("models", "m", a.version, "MANIFEST.tsv"),
                                           b"junk\n"), "bad header", "MANIFEST.tsv"),
]  # fmt: skip


@pytest.mark.parametrize(("damage", "message", "file"), [d[1:] for d in DAMAGES],
                         ids=[d[0] for d in DAMAGES])  # fmt: skip
def test_a_damaged_version_is_refused_naming_the_file(
    backend: Backend, damage: Callable[[Backend, Artifact], None], message: str, file: str
) -> None:
    store = backend.store()
    artifact = store.commit("m", {"a.bin": b"one"})
    damage(backend, artifact)
    with pytest.raises(ArtifactCorruptionError, match=message) as info:
        store.verify("m", artifact.version)
    assert f"{artifact.directory}/{file}" in str(info.value)
    with pytest.raises(ArtifactError):
        store.promote("m", artifact.version)  # never promoted either
    assert store.current("m") is None


def test_on_gcs_a_replaced_object_that_kept_its_record_is_refused(gcs_server: object) -> None:
    """A rewrite that copies the object's recorded sha256 along: GCS's own md5 tells (a
    local verify hashes the whole file every time)."""
    store = ArtifactStore(fresh_url(), "models")
    artifact = store.commit("m", {"a.bin": b"one"})
    obj = blob(str(artifact.path("a.bin")))
    obj.reload()
    recorded = dict(obj.metadata or {})
    obj.metadata = recorded
    obj.upload_from_string(b"ONE")
    obj.reload()
    assert obj.metadata == recorded and obj.size == 3  # only the content differs
    with pytest.raises(ArtifactCorruptionError, match="content mismatch") as info:
        store.verify("m", artifact.version)
    assert str(artifact.path("a.bin")) in str(info.value)
    with pytest.raises(ArtifactCorruptionError, match=r"a\.bin: does not match"):
        artifact.read_bytes("a.bin")


def test_a_file_changed_after_verification_is_refused_when_read(backend: Backend) -> None:
    store = backend.store("datasets")
    artifact = store.commit("training", {"a.bin": b"one"})
    backend.write(artifact.path("a.bin"), b"two")
    with pytest.raises(ArtifactCorruptionError, match=r"a\.bin"):
        artifact.read_bytes("a.bin")


def test_recommitting_repairs_a_damaged_copy(backend: Backend) -> None:
    store = backend.store()
    artifact = store.commit("m", {"a.bin": b"one"})
    backend.write(artifact.path("a.bin"), b"bad")
    repaired = store.commit("m", {"a.bin": b"one"})
    assert repaired.version == artifact.version
    assert repaired.read_bytes("a.bin") == b"one"
    assert backend.read(artifact.path("a.bin")) == b"one"


def test_an_interrupted_commit_leaves_no_version(backend: Backend) -> None:
    store = backend.store()
    if isinstance(backend.root, Path):  # a temp folder of a commit that died before its rename
        (backend.root / "models" / "m" / ".abc.1.ffff.tmp").mkdir(parents=True)
    else:  # on GCS, files uploaded but the manifest (the commit) never was
        version = "0123456789abcdef"
        backend.write(backend.at("models", "m", version, "a.bin"), b"one")
        backend.write(backend.at("models", "m", version, "_SUCCESS"), b"")
        with pytest.raises(ArtifactCorruptionError, match="manifest missing"):
            store.verify("m", version)
    assert store.versions("m") == []
    assert store.current("m") is None
    committed = store.commit("m", {"a.bin": b"one"})
    assert store.versions("m") == [committed.version]


def test_a_commit_that_dies_halfway_publishes_nothing(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer fails after its first file (disk full, pod killed, network gone): no
    version is listed nor verifiable, and the next commit of the same content completes it."""
    store = backend.store()
    files = {"a.bin": b"one", "b.bin": b"two", "c.bin": b"three"}
    written: list[str] = []

    def failing(write: Callable[..., object]) -> Callable[..., object]:
        def wrapper(*args: object) -> object:
            if written:
                raise OSError("no space left on device")
            written.append(str(args))
            return write(*args)

        return wrapper

    if backend.kind == "local":
        import btc_assets.artifacts as artifacts

        monkeypatch.setattr(artifacts, "_write_synced", failing(artifacts._write_synced))
    else:
        monkeypatch.setattr(store.storage, "put_data", failing(store.storage.put_data))
    with pytest.raises(OSError, match="no space"):
        store.commit("m", files)
    monkeypatch.undo()
    assert written and store.versions("m") == []
    expected = backend.store().commit("m", files)
    assert store.versions("m") == [expected.version]
    assert store.verify("m", expected.version).read_bytes("c.bin") == b"three"


def test_bad_names_and_pointers_are_refused(backend: Backend) -> None:
    store = backend.store()
    with pytest.raises(ArtifactError, match="bad models name"):
        store.commit("../x", {"a": b""})
    with pytest.raises(ArtifactError, match="bad file names"):
        store.commit("m", {"MANIFEST.tsv": b""})
    backend.write(backend.at("models", "m", "CURRENT"), b"../../etc\n")
    with pytest.raises(ArtifactCorruptionError, match="bad version") as info:
        store.current("m")
    assert str(backend.at("models", "m", "CURRENT")) in str(info.value)
    with pytest.raises(ValueError, match="artifact kind"):
        ArtifactStore(backend.root, "tables")  # type: ignore[arg-type]
    # a promote replaces the bad pointer (it has a version to compare against)
    version = store.commit("m", {"a.bin": b"x"}).version
    assert store.promote("m", version) is None
    assert store.current("m") == version


def test_artifact_folders_are_not_lake_tables(backend: Backend) -> None:
    backend.store("models").commit("m", {"a.bin": b"x"})
    backend.store("datasets").commit("training", {"a.bin": b"x"})
    backend.write(backend.at("bars_15m", "BTCUSDT", "x"), b"")
    assert Lake(backend.root).tables() == ["bars_15m"]


# ---------------------------------------------------------------------- promote races


def _interleaved(store: ArtifactStore, other: Callable[[], None]) -> list[int]:
    """Make ``other`` run right after ``store``'s first read of the pointer: the race a
    second pod's promote wins. Returns the list the reads are counted in."""
    reads: list[int] = []
    read_manifest = store.storage.read_manifest

    def racing(location: Location) -> tuple[str, object]:
        result = read_manifest(location)
        reads.append(1)
        if len(reads) == 1:
            other()
        return result

    store.storage.read_manifest = racing  # type: ignore[method-assign,assignment]
    return reads


def test_a_promote_that_lost_the_race_rereads_and_wins_whole(backend: Backend) -> None:
    store, rival = backend.store(), backend.store()  # two pods, two sessions
    v1, v2, v3 = (store.commit("m", {"a.bin": data}).version for data in (b"1", b"2", b"3"))
    store.promote("m", v1)
    reads = _interleaved(store, lambda: rival.promote("m", v2))
    previous = store.promote("m", v3)
    assert len(reads) == 2  # the stale commit was refused, then re-read once
    assert previous == v2  # it replaced what the rival promoted, not what it first read
    assert rival.current("m") == v3


def test_a_promote_conditional_on_a_stale_pointer_is_refused(backend: Backend) -> None:
    store, rival = backend.store(), backend.store()
    v1, v2, v3 = (store.commit("m", {"a.bin": data}).version for data in (b"1", b"2", b"3"))
    store.promote("m", v1)
    _interleaved(store, lambda: rival.promote("m", v2))
    with pytest.raises(ArtifactPromoteConflict, match=f"names {v2}, not {v1}") as info:
        store.promote("m", v3, if_current=v1)
    assert str(backend.at("models", "m", "CURRENT")) in str(info.value)
    assert rival.current("m") == v2  # the rival's promote stands
    with pytest.raises(ArtifactPromoteConflict, match="names nothing"):
        backend.store().promote("other", backend.store().commit("other", {"a": b""}).version,
                                if_current=v1)  # fmt: skip
    assert backend.store().promote("m", v3, if_current=v2) == v2


def test_a_commit_against_a_stale_pointer_version_is_refused_by_the_storage(
    backend: Backend,
) -> None:
    """The primitive ``promote`` relies on, on the pointer itself."""
    store = backend.store()
    v1, v2 = (store.commit("m", {"a.bin": data}).version for data in (b"1", b"2"))
    store.promote("m", v1)
    pointer = backend.at("models", "m", "CURRENT")
    _, stale = store.storage.read_manifest(pointer)
    store.promote("m", v2)
    with pytest.raises(LakeCommitConflict):
        store.storage.commit(pointer, f"{v1}\n", stale)
    assert store.current("m") == v2


def test_concurrent_promotes_each_replace_exactly_what_they_saw(backend: Backend) -> None:
    """Of N promotes at once, each one's commit replaced the pointer the previous commit
    left: the 'replaced' versions form one chain from nothing to the final pointer. A blind
    overwrite would let two promotes both replace the same version."""
    store = backend.store()
    versions = [store.commit("m", {"a.bin": str(i).encode()}).version for i in range(6)]
    start = threading.Barrier(len(versions))
    replaced: dict[str, str | None] = {}
    errors: list[BaseException] = []

    def promote(version: str) -> None:
        mine = backend.store()
        start.wait()
        try:
            replaced[version] = mine.promote("m", version)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    final = store.current("m")
    assert final in versions
    chain, at = [], final
    while at is not None and len(chain) <= len(versions):
        chain.append(at)
        at = replaced[at]
    assert sorted(chain) == sorted(versions)  # every promote is one link of the chain
