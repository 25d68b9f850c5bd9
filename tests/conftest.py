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


# ----- neural models: a small catalog and its text vectors, computed once ---------------
COLD_ANIMATION_ITEMS = 25
COLD_OTHER_ITEMS = 25


@pytest.fixture(scope="session")
def core_compact(ml_core, ml_small):
    """ml_core over a catalog of its own items plus some items nobody in it interacted with.

    Encoding the text of ~1,300 items instead of all 9,742 keeps the suite fast; the extra
    items (half of them animated children's films) are genuinely cold, to test cold start.
    """
    import numpy as np

    from whyrec.data.dataset import Dataset

    catalog = ml_core.catalog
    used = np.unique(ml_core.codes[1])
    unused = np.setdiff1d(np.arange(len(catalog)), used)
    kids = catalog.mask_with_value("genres", ["Animation"]) & catalog.mask_with_value(
        "genres", ["Children"]
    )
    rng = np.random.default_rng(7)
    cold_kids = rng.permutation(unused[kids[unused]])[:COLD_ANIMATION_ITEMS]
    cold_other = rng.permutation(unused[~kids[unused]])[:COLD_OTHER_ITEMS]
    keep = np.sort(np.concatenate([used, cold_kids, cold_other]))
    return Dataset(ml_core.interactions, catalog.subset(keep), name="ml-core-compact")


@pytest.fixture(scope="session")
def core_item_vectors(core_compact, tmp_path_factory):
    """Text vectors of the compact catalog, encoded once per session into a fresh folder.

    encode_items also memoises them in memory, so every model fitted later in the session
    reuses them instead of running the encoder again.
    """
    from whyrec.text.encoder import encode_items

    return encode_items(core_compact.catalog, cache_dir=tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="session")
def core_loo(core_compact):
    """Leave-last-one-out split of the compact 20-core data."""
    from whyrec.data.splits import split

    return split(core_compact, "loo", seed=42)


# ----- the LLM layer: a scripted OpenAI-compatible server on loopback -------------------
@pytest.fixture
def llm_server():
    """A started `llm_server.ScriptedLLM` answering like a well-behaved LLM until scripted."""
    from llm_server import ScriptedLLM, helpful

    with ScriptedLLM(helpful) as server:
        yield server


# ----- PostgreSQL: a real server for the store and service tests -------------------------
@pytest.fixture(scope="session")
def postgres_server():
    """URL of a running PostgreSQL server (CI's, or a throwaway cluster of our own)."""
    from postgres_server import ENV_URL, pg_bin_dir, throwaway_cluster
    from system_deps import require

    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    require(pg_bin_dir() is not None, "PostgreSQL", f"{ENV_URL}, or apt-get install postgresql")
    with throwaway_cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the test server."""
    from postgres_server import fresh_database

    return fresh_database(postgres_server)


@pytest.fixture(scope="session")
def served_bundle(tmp_path_factory):
    """An EASE bundle on the 20-core of ml-latest-small, trained once for the service tests."""
    from whyrec.cli import main

    path = tmp_path_factory.mktemp("served") / "ease"
    try:
        main(
            [
                "train",
                "--data",
                "ml-latest-small",
                "--kcore",
                "20",
                "--no-calibrate",
                "--out",
                str(path),
            ]
        )
    except SystemExit as exc:
        assert not exc.code
    _encode_catalog_once(path)
    return path


def _encode_catalog_once(bundle) -> None:
    """Encode the bundle's item texts into the cache the test servers share, so that no
    server (each warms up its soft-wish matcher) spends its start-up encoding them again."""
    from live_server import SHARED_CACHE
    from whyrec.bundle import Bundle
    from whyrec.text.encoder import encode_items

    catalog = Bundle.load(bundle).catalog
    encode_items(catalog, cache_dir=SHARED_CACHE / "embeddings")
    encode_items(catalog, cache_dir=SHARED_CACHE / "embeddings", with_titles=False)
