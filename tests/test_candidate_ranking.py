"""The candidate path (rank only the items a history reaches) gives the lists of the
full-row path: same items, same order, same scores, with filters, exclusions and short
lists, on real data and on a synthetic catalog, for every model that takes it."""

from __future__ import annotations

import numpy as np
import pytest

from whyrec.bundle import Bundle
from whyrec.data.dataset import Dataset
from whyrec.engine import Engine
from whyrec.filters import ItemFilter
from whyrec.models import EASE, SANSA, model_class
from whyrec.ranking import CandidateScores, top_k, top_k_candidates
from whyrec.sparse_rows import distinct


def test_candidate_top_k_equals_top_k_on_the_full_row():
    """Random rows with ties at and around the fill score, NaN, -inf and negative scores."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        n_items = int(rng.integers(5, 400))
        base = np.sort(rng.choice(n_items, int(rng.integers(1, n_items + 1)), replace=False))
        positions = np.sort(rng.choice(base, int(rng.integers(0, len(base) + 1)), replace=False))
        values = rng.integers(-3, 4, len(positions)).astype(np.float32)  # many ties, some 0
        values[rng.random(len(positions)) < 0.05] = np.nan
        values[rng.random(len(positions)) < 0.05] = -np.inf
        row = CandidateScores(positions, values, base, 0.0, n_items)
        allowed = rng.random(n_items) < rng.uniform(0.2, 1.0)
        for k in (1, 5, 50, n_items + 3):
            expected = top_k(row.dense(), k, allowed)
            got = top_k_candidates(row, k, lambda among, allowed=allowed: allowed[among])
            assert np.array_equal(got, expected), (trial, k)
            assert np.array_equal(row.at(got), row.dense()[got])


def random_filter(catalog, rng) -> ItemFilter:
    """A filter built from the catalog's own fields and values (no dataset's names)."""
    field = catalog.fields[int(rng.integers(len(catalog.fields)))]
    common = [v for v, _ in catalog.value_counts(field).most_common(6)]
    kind = int(rng.integers(5))
    if kind == 0:
        return ItemFilter(include={field: {common[0], common[-1]}})
    if kind == 1:
        return ItemFilter(exclude={field: {common[0]}})
    if kind == 2:
        return ItemFilter(any_of=[[(field, common[1]), (field, common[-1])]])
    if kind == 3:
        return ItemFilter(require={field: {common[-1]}}, blocked=frozenset(range(0, 300, 3)))
    years = catalog.years[np.isfinite(catalog.years)]
    if len(years):
        low, high = np.percentile(years, [40, 60])
        return ItemFilter(year_min=int(low), excluded_years=[(int(low), int(high))])
    return ItemFilter(blocked=frozenset(range(0, 200, 2)))


def assert_both_paths_agree(dataset: Dataset, model, users: int = 40) -> dict:
    """Compare the engine's candidate path with its full-row path on sampled requests;
    returns how often the fill band (unreached items) and negative scores were ranked,
    so a caller can check the comparison reached those cases."""
    bundle = Bundle(model, dataset)
    sparse, dense = Engine(bundle), Engine(bundle, candidates=False)
    rng = np.random.default_rng(1)
    matrix = dataset.matrix
    reached = {"fill": 0, "negative": 0, "short": 0}
    rows = rng.choice(dataset.n_users, min(users, dataset.n_users), replace=False)
    histories = [matrix.indices[matrix.indptr[u] : matrix.indptr[u + 1]] for u in rows]
    histories += [np.zeros(0, dtype=np.int64), histories[0][:1]]  # nobody, one item
    for n, history in enumerate(histories):
        rows_model = model.candidate_scores(history)
        assert rows_model is not None
        assert np.array_equal(rows_model.dense(), model.score([history])[0])
        for k in (10, 1000):
            item_filter = random_filter(dataset.catalog, rng) if n % 2 else None
            exclude = rng.choice(len(dataset.catalog), 50, replace=False)
            args = dict(k=k, item_filter=item_filter, exclude=exclude, explain=False)
            got = sparse.recommend(history, **args)
            expected = dense.recommend(history, **args)
            assert np.array_equal(got.positions, expected.positions), (n, k)
            assert np.array_equal(got.scores, expected.scores), (n, k)
            reached["fill"] += int(np.sum(expected.scores == 0))
            reached["negative"] += int(np.sum(expected.scores < 0))
            reached["short"] += int(len(expected.positions) < k)
    # explanations see the same row on both paths
    first = sparse.recommend(histories[0], k=5, explain=True)
    reference = dense.recommend(histories[0], k=5, explain=True)
    assert [e.to_dict() for e in first.explanations] == [
        e.to_dict() for e in reference.explanations
    ]
    return reached


@pytest.mark.parametrize(
    "name, params",
    [
        ("sansa", {"weights_per_item": 20}),
        ("sansa", {"weights_per_item": 20, "outgoing_cap": 1.0}),
        ("itemknn", {"neighbors": 20}),
    ],
)
def test_candidate_path_equals_full_row_on_movielens(ml_core, name, params):
    """ml-latest-small's 20-core over its whole 9,742-item catalog (most items inactive)."""
    model = model_class(name)(**params).fit(ml_core)
    reached = assert_both_paths_agree(ml_core, model)
    assert reached["fill"]  # lists longer than the items the history reaches
    if name == "sansa":  # EASE-like weights can be negative; cosine neighbours cannot
        assert reached["negative"]
    assert reached["short"]  # filters that leave fewer than 1,000 items


@pytest.mark.parametrize("shape", ["movies", "lastfm"])
def test_candidate_path_equals_full_row_on_a_synthetic_catalog(tmp_path, shape):
    from whyrec.data.loaders import load_dataset
    from whyrec.data.synth import SynthConfig, write_synthetic

    config = SynthConfig(users=400, items=3000, interactions=12_000, seed=2, shape=shape)
    write_synthetic(config, tmp_path / shape, "parquet")
    dataset = load_dataset(tmp_path / shape)
    reached = assert_both_paths_agree(dataset, SANSA(weights_per_item=10).fit(dataset))
    assert reached["fill"]


def test_dense_weights_keep_the_full_row(ml_core):
    """EASE reaches every active item: no candidate row, the engine ranks the full one."""
    model = EASE(reg=250.0).fit(ml_core)
    assert model.candidate_scores(distinct(ml_core.matrix.indices[:20])) is None


def test_filter_on_a_subset_is_the_full_mask_restricted(ml_small):
    rng = np.random.default_rng(3)
    catalog = ml_small.catalog
    among = np.sort(rng.choice(len(catalog), 500, replace=False))
    for _ in range(30):
        item_filter = random_filter(catalog, rng)
        assert np.array_equal(item_filter.mask(catalog, among), item_filter.mask(catalog)[among])
