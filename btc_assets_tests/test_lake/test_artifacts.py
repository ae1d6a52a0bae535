"""Versioned artifacts: content-named, atomic, verified on every read."""

from __future__ import annotations

from pathlib import Path

import pytest

from btc_assets.artifacts import ArtifactCorruptionError, ArtifactError, ArtifactStore
from btc_assets.lake import Lake


def test_a_version_is_named_by_its_content_and_recommitting_changes_nothing(
    tmp_path: Path,
) -> None:
    store = ArtifactStore(tmp_path, "models")
    first = store.commit("m", {"a.bin": b"alpha", "card.json": b"{}"})
    again = store.commit("m", {"card.json": b"{}", "a.bin": b"alpha"})
    assert again.version == first.version and again.sha256 == first.sha256
    other = store.commit("m", {"a.bin": b"beta", "card.json": b"{}"})
    assert other.version != first.version
    assert store.versions("m") == [first.version, other.version]
    assert first.read_bytes("a.bin") == b"alpha"
    assert store.current("m") is None  # committing does not promote


def test_promote_moves_the_pointer_and_read_current_verifies(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "models")
    v1 = store.commit("m", {"a.bin": b"one"}).version
    v2 = store.commit("m", {"a.bin": b"two"}).version
    store.promote("m", v1)
    assert store.read_current("m").version == v1  # type: ignore[union-attr]
    store.promote("m", v2)
    assert store.current("m") == v2
    assert not [p for p in (tmp_path / "models" / "m").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "a.bin").write_bytes(b"ONE"), "sha256 mismatch"),
        (lambda d: (d / "a.bin").write_bytes(b"longer"), "size mismatch"),
        (lambda d: (d / "a.bin").unlink(), "missing"),
        (lambda d: (d / "_SUCCESS").unlink(), "marker missing"),
        (lambda d: (d / "MANIFEST.tsv").write_text("junk\n"), "bad header"),
    ],
)
def test_a_damaged_version_is_refused_naming_the_file(
    tmp_path: Path, damage: object, message: str
) -> None:
    store = ArtifactStore(tmp_path, "models")
    artifact = store.commit("m", {"a.bin": b"one"})
    damage(artifact.directory)  # type: ignore[operator]
    with pytest.raises(ArtifactCorruptionError, match=message) as info:
        store.verify("m", artifact.version)
    assert str(artifact.directory) in str(info.value)
    with pytest.raises(ArtifactError):
        store.promote("m", artifact.version)  # never promoted either


def test_a_file_changed_after_verification_is_refused_when_read(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "datasets")
    artifact = store.commit("training", {"a.bin": b"one"})
    (artifact.directory / "a.bin").write_bytes(b"two")
    with pytest.raises(ArtifactCorruptionError, match=r"a\.bin"):
        artifact.read_bytes("a.bin")


def test_recommitting_repairs_a_damaged_copy(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "models")
    artifact = store.commit("m", {"a.bin": b"one"})
    (artifact.directory / "a.bin").write_bytes(b"bad")
    repaired = store.commit("m", {"a.bin": b"one"})
    assert repaired.version == artifact.version
    assert repaired.read_bytes("a.bin") == b"one"


def test_an_interrupted_commit_leaves_no_version(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "models")
    (tmp_path / "models" / "m" / ".abc.1.ffff.tmp").mkdir(parents=True)
    assert store.versions("m") == []
    assert store.current("m") is None


def test_bad_names_and_pointers_are_refused(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path, "models")
    with pytest.raises(ArtifactError, match="bad models name"):
        store.commit("../x", {"a": b""})
    with pytest.raises(ArtifactError, match="bad file names"):
        store.commit("m", {"MANIFEST.tsv": b""})
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "models" / "m" / "CURRENT").write_text("../../etc\n")
    with pytest.raises(ArtifactCorruptionError, match="bad version"):
        store.current("m")
    with pytest.raises(ValueError, match="artifact kind"):
        ArtifactStore(tmp_path, "tables")  # type: ignore[arg-type]


def test_artifact_folders_are_not_lake_tables(tmp_path: Path) -> None:
    ArtifactStore(tmp_path, "models").commit("m", {"a.bin": b"x"})
    ArtifactStore(tmp_path, "datasets").commit("training", {"a.bin": b"x"})
    (tmp_path / "bars_15m").mkdir()
    assert Lake(tmp_path).tables() == ["bars_15m"]
