"""Fetching: local sources first, SHA-256 verification, and no half-written cache."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from whyrec.data import fetch as fetch_module
from whyrec.data.fetch import KNOWN_DATASETS, cache_dir, fetch
from whyrec.errors import FetchError


@pytest.fixture
def shared_zip(ml_dir) -> Path:
    return ml_dir.parent / "ml-latest-small.zip"


def _cache_leftovers() -> list[str]:
    root = cache_dir()
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_unpacked_local_copy_is_used_in_place(ml_dir):
    assert fetch("ml-latest-small") == ml_dir


def test_zip_in_source_is_verified_and_unpacked(tmp_path, shared_zip, monkeypatch):
    monkeypatch.delenv("WHYREC_DATA_DIR")
    shutil.copy(shared_zip, tmp_path / "ml-latest-small.zip")
    path = fetch("ml-latest-small", source=tmp_path)
    assert path == cache_dir() / "ml-latest-small"
    assert (path / "ratings.csv").exists()
    assert _cache_leftovers() == ["ml-latest-small"]
    assert fetch("ml-latest-small") == path  # second call reads the cache


def test_wrong_checksum_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.delenv("WHYREC_DATA_DIR")
    (tmp_path / "ml-latest-small.zip").write_bytes(b"not a zip at all")
    with pytest.raises(FetchError, match="fails verification"):
        fetch("ml-latest-small", source=tmp_path)
    assert _cache_leftovers() == []


def test_corrupt_zip_with_matching_checksum_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("WHYREC_DATA_DIR")
    bad = tmp_path / "ml-latest-small.zip"
    bad.write_bytes(b"PK\x03\x04 truncated archive")
    spec = dataclasses.replace(
        KNOWN_DATASETS["ml-latest-small"], sha256=fetch_module.sha256_of(bad)
    )
    monkeypatch.setitem(KNOWN_DATASETS, "ml-latest-small", spec)
    with pytest.raises(FetchError, match="cannot unpack"):
        fetch("ml-latest-small", source=tmp_path)
    assert _cache_leftovers() == []


def test_download_path_verifies_and_unpacks(shared_zip, monkeypatch):
    """The network path, fed by a file:// URL so it runs offline."""
    monkeypatch.delenv("WHYREC_DATA_DIR")
    spec = dataclasses.replace(KNOWN_DATASETS["ml-latest-small"], url=shared_zip.as_uri())
    monkeypatch.setitem(KNOWN_DATASETS, "ml-latest-small", spec)
    path = fetch("ml-latest-small")
    assert (path / "movies.csv").exists()
    assert _cache_leftovers() == ["ml-latest-small"]


def test_failed_download_explains_the_offline_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv("WHYREC_DATA_DIR")
    missing = (tmp_path / "absent.zip").as_uri()
    spec = dataclasses.replace(KNOWN_DATASETS["ml-100k"], url=missing)
    monkeypatch.setitem(KNOWN_DATASETS, "ml-100k", spec)
    with pytest.raises(FetchError, match="WHYREC_DATA_DIR"):
        fetch("ml-100k")
    assert _cache_leftovers() == []


def test_unknown_dataset_and_bad_source(tmp_path):
    with pytest.raises(FetchError, match="unknown dataset"):
        fetch("ml-2b")
    with pytest.raises(FetchError, match="not a directory"):
        fetch("ml-latest-small", source=tmp_path / "missing")
