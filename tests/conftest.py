"""Shared fixtures: real MovieLens data from ../shared/data, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data" / "movielens").resolve()
os.environ.setdefault("WHYREC_DATA_DIR", str(SHARED_DATA))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own dataset cache so nothing leaks between tests."""
    monkeypatch.setenv("WHYREC_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def ml_dir() -> Path:
    path = Path(os.environ["WHYREC_DATA_DIR"]) / "ml-latest-small"
    if not (path / "ratings.csv").exists():
        pytest.fail(f"test data missing: {path} (set WHYREC_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def ml_small(ml_dir):
    """The whole ml-latest-small dataset (100,836 ratings)."""
    from whyrec.data.loaders import load_directory

    return load_directory(ml_dir, name="ml-latest-small")


@pytest.fixture(scope="session")
def ml_core(ml_small):
    """ml-latest-small reduced to its 20-core: real data, small enough for fast model fits."""
    return ml_small.kcore(20)
