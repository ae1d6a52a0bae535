"""BTC_ASSETS_LAKE_URL: a folder or gs://bucket/prefix, and where each part of the project
then finds the lake; a bad value names the variable."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from btc_assets.defs.definitions import build_resources
from btc_assets.settings import SettingsError, load_settings


def test_unset_or_empty_is_the_data_folders_lake(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BTC_ASSETS_DATA_DIR", str(tmp_path))
    assert load_settings().lake_location == tmp_path / "lake"
    monkeypatch.setenv("BTC_ASSETS_LAKE_URL", " ")
    settings = load_settings()
    assert (settings.lake_location, settings.lake_on_gcs) == (tmp_path / "lake", False)


def test_a_folder_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BTC_ASSETS_LAKE_URL", "elsewhere/lake")
    assert load_settings().lake_location == tmp_path / "elsewhere" / "lake"


@pytest.mark.parametrize(
    ("value", "url"),
    [("gs://my-bucket/lake/", "gs://my-bucket/lake"), ("gs://my-bucket", "gs://my-bucket"),
     ("gs://my.bucket_2/a/b", "gs://my.bucket_2/a/b")],
)  # fmt: skip
def test_a_gcs_url_is_the_lake_everywhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, url: str
) -> None:
    monkeypatch.setenv("BTC_ASSETS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BTC_ASSETS_LAKE_URL", value)
    settings = load_settings()
    assert (settings.lake_location, settings.lake_on_gcs) == (url, True)
    resources = build_resources(replace(settings, env="sandbox"))
    assert resources["dataset"].lake_root == url  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "why"),
    [("s3://bucket/lake", "only a folder path or gs://BUCKET/PREFIX"),
     ("https://storage.googleapis.com/b/lake", "only a folder path or gs://BUCKET/PREFIX"),
     ("gs://My_Bucket/lake", "not a GCS bucket name"), ("gs:///lake", "not a GCS bucket name"),
     ("gs://bucket/a//b", "empty, '.' or '..' folder"), ("gs://bucket/../x", "'..'")],
)  # fmt: skip
def test_a_bad_url_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    monkeypatch.setenv("BTC_ASSETS_LAKE_URL", value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert str(err.value).startswith(f"BTC_ASSETS_LAKE_URL={value!r}:")
    assert why in str(err.value)
