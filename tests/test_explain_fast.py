"""The vectorized explanation code against the definitions, recomputed the slow way.

Co-interaction counts come back from Python sets of users per item, attribute paths and
shared values from the catalog's own attribute sets, cited items from a full stable sort,
ranks from `rank_of`, scores from the sparse product the item-item models used before.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from whyrec.bundle import Bundle
from whyrec.core import Query
from whyrec.engine import Engine
from whyrec.errors import WhyrecError
from whyrec.explain.attribution import shares_of
from whyrec.explain.explainer import Explainer, strongest
from whyrec.models import EASE
from whyrec.models.base import histories_to_csr
from whyrec.models.itemknn import ItemKNN
from whyrec.ranking import rank_of, top_k
from whyrec.sparse_rows import distinct, distinct_per_group, gather_rows

USERS = ("1", "15", "68", "111", "249", "414", "474", "599")


@pytest.fixture(scope="module")
def engine(ml_core) -> Engine:
    return Engine(Bundle(EASE().fit(ml_core), ml_core))


@pytest.fixture(scope="module")
def knn_engine(ml_core) -> Engine:
    return Engine(Bundle(ItemKNN().fit(ml_core), ml_core))


@pytest.fixture(scope="module")
def users_of_item(ml_core) -> list[set[int]]:
    """Training user rows per item, straight from the interaction codes."""
    users: list[set[int]] = [set() for _ in range(ml_core.n_items)]
    for user, item in zip(*ml_core.codes, strict=True):
        users[int(item)].add(int(user))
    return users


def explained_lists(engine: Engine):
    """(user row or None, explanations) for known users and one anonymous history."""
    for user in USERS:
        history = engine.user_history(user)
        recommendations = engine.recommend(history, k=10, user_id=user)
        yield engine.user_row(user), [r.explanation for r in recommendations]
    anonymous = engine.user_history(USERS[0])[:6]
    yield None, [r.explanation for r in engine.recommend(anonymous, k=10)]


@pytest.mark.parametrize("fixture", ["engine", "knn_engine"])
def test_collaborative_counts_are_the_set_sizes(fixture, request, users_of_item):
    engine = request.getfixturevalue(fixture)
    checked = 0
    for user_row, explanations in explained_lists(engine):
        for explanation in explanations:
            evidence = explanation.collaborative
            if evidence is None:
                assert not explanation.history
                continue
            others = [users_of_item[c.position] - {user_row} for c in explanation.history]
            target = users_of_item[explanation.position] - {user_row}
            union = set().union(*others)
            assert evidence.users_with_cited == len(union)
            assert evidence.users_with_both == len(union & target)
            assert evidence.per_cited_item == tuple(len(o & target) for o in others)
            checked += 1
    assert checked >= 50


def expected_paths(engine: Engine, explanation) -> list[tuple[float, str, str, str]]:
    """(weight, cited title, field, value) of every shared attribute, from catalog sets."""
    catalog = engine.catalog
    n_items = len(catalog)
    paths = []
    for c in explanation.history:
        for field in catalog.fields:
            column = catalog.attributes[field]
            for value in set(column[c.position]) & set(column[explanation.position]):
                frequency = sum(value in values for values in column)
                weight = math.log(n_items / frequency) * max(c.share, 0.0)
                paths.append((weight, c.title, field, value))
    return paths


def test_paths_and_shared_values_follow_the_catalog(engine):
    checked = 0
    for _, explanations in explained_lists(engine):
        for explanation in explanations:
            paths = expected_paths(engine, explanation)
            got = [(p.weight, p.from_title, p.field, p.value) for p in explanation.paths]
            assert len(got) == min(len(paths), engine.explainer.max_paths)
            heaviest = sorted((w for w, *_ in paths), reverse=True)[: len(got)]
            np.testing.assert_allclose([w for w, *_ in got], heaviest, rtol=1e-12)
            assert {g[1:] for g in got} <= {p[1:] for p in paths}
            totals: dict[tuple[str, str], float] = {}
            for weight, _, field, value in paths:
                totals[field, value] = totals.get((field, value), 0.0) + weight
            for shared in explanation.shared_values:
                assert shared.weight == pytest.approx(totals[shared.field, shared.value])
                liked = {t for _, t, f, v in paths if (f, v) == (shared.field, shared.value)}
                assert set(shared.liked_titles) == liked
            best = sorted(totals.values(), reverse=True)[: len(explanation.shared_values)]
            np.testing.assert_allclose([s.weight for s in explanation.shared_values], best)
            checked += bool(paths)
    assert checked >= 50


def test_shared_value_pairs_are_set_intersections(engine):
    graph = engine.explainer.graph
    rng = np.random.default_rng(3)
    sources = rng.integers(0, graph.n_items, 300)
    targets = rng.integers(0, graph.n_items, 300)
    pairs, values = graph.shared_values(sources, targets)
    got = set(zip(pairs.tolist(), values.tolist(), strict=True))
    expected = {
        (i, int(v))
        for i, (s, t) in enumerate(zip(sources, targets, strict=True))
        for v in set(graph.item_values(s)) & set(graph.item_values(t))
    }
    assert got == expected
    assert graph.shared_values(sources[:0], targets[:0])[0].shape == (0,)


@pytest.mark.parametrize("later_first", [False, True])
@pytest.mark.parametrize("top", [1, 3, 8])
def test_strongest_is_the_head_of_a_stable_sort(top, later_first):
    rng = np.random.default_rng(top)
    for columns in (1, 2, 3, 5, 40):
        values = rng.integers(-3, 4, size=(6, columns)).astype(float)  # many ties
        rows, picked = strongest(values, top, later_first=later_first)
        order = np.argsort(-values, axis=1, kind="stable")
        if later_first:  # a reversed stable ascending sort: ties by later column first
            order = np.argsort(values, axis=1, kind="stable")[:, ::-1]
        for row in range(values.shape[0]):
            assert picked[rows == row].tolist() == order[row, :top].tolist()


def test_ranks_read_off_the_head_equal_rank_of():
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 30, 400).astype(float)  # ties everywhere, also at the cut
    scores[rng.choice(400, 20, replace=False)] = -np.inf
    allowed = rng.random(400) > 0.2
    head = top_k(scores, 50, allowed)
    items = np.concatenate([head, rng.integers(0, 400, 60)])
    ranks = Explainer._ranks(scores, allowed, head, items)
    assert ranks == [rank_of(scores, allowed, int(p)) for p in items]


def test_shares_of_rows_equal_each_row_alone():
    rng = np.random.default_rng(8)
    weights = rng.normal(size=(7, 333))
    weights[2] = -np.abs(weights[2])  # negative total: shares of the magnitude
    weights[3] = 0.0  # nothing: all zero
    together = shares_of(weights)
    for row in range(len(weights)):
        assert np.array_equal(together[row], shares_of(weights[row]))


@pytest.mark.parametrize("fixture", ["engine", "knn_engine"])
def test_item_item_scores_equal_the_sparse_product(fixture, request):
    model = request.getfixturevalue(fixture).model
    rng = np.random.default_rng(11)
    inactive = np.setdiff1d(np.arange(model.n_items_), model.active_)[:3]
    histories = [
        rng.choice(model.active_, 40, replace=False),
        np.concatenate([rng.choice(model.active_, 5), inactive]),  # repeats, unknown items
        np.zeros(0, dtype=np.int64),
    ]
    matrix = histories_to_csr(histories, model.n_items_)
    product = matrix[:, model.active_] @ model.weights_
    product = product.toarray() if sp.issparse(product) else product
    expected = np.full((3, model.n_items_), -np.inf, dtype=np.float32)
    expected[:, model.active_] = product
    assert np.array_equal(model.score(histories), expected)  # bit for bit
    assert np.array_equal(model.score(matrix), expected)
    assert np.array_equal(model.score(histories, items=inactive[:1]), expected[:, inactive[:1]])
    with pytest.raises(WhyrecError, match="history positions"):
        model.score([np.array([model.n_items_])])
    with pytest.raises(WhyrecError, match="history positions"):
        model.score([np.array([-1])])


def test_gathered_rows_are_the_scipy_rows(ml_core):
    by_item = ml_core.matrix.tocsc()
    wanted = np.array([5, 0, 5, 17, ml_core.n_items - 1])
    owners, users = gather_rows(by_item, wanted)
    for i, item in enumerate(wanted):
        assert users[owners == i].tolist() == by_item[:, item].indices.tolist()


@pytest.mark.parametrize("group_size", [7, 100_000])  # a dense table, then a sort
def test_distinct_per_group_counts_sets(group_size):
    rng = np.random.default_rng(group_size)
    groups, members = rng.integers(0, 4, 500), rng.integers(0, 7, 500)
    keys = groups * group_size + members
    expected = [len(set(members[groups == g].tolist())) for g in range(5)]
    assert distinct_per_group(keys, group_size, 5).tolist() == expected
    assert distinct(keys).tolist() == sorted(set(keys.tolist()))


@pytest.mark.parametrize("fixture", ["engine", "knn_engine"])
def test_contributions_are_the_weight_entries(fixture, request):
    model = request.getfixturevalue(fixture).model
    rng = np.random.default_rng(13)
    inactive = np.setdiff1d(np.arange(model.n_items_), model.active_)[:2]
    history = np.concatenate([rng.choice(model.active_, 60, replace=False), inactive[:1]])
    items = np.concatenate([rng.choice(model.active_, 8), model.active_[:1], inactive[1:]])
    items = np.concatenate([items, items[:2]])  # repeated items too
    weights = model.weights_.toarray() if sp.issparse(model.weights_) else model.weights_
    expected = np.zeros((len(items), len(history)), dtype=np.float32)
    for t, item in enumerate(items):
        for h, liked in enumerate(history):
            row, col = model._active_of[liked], model._active_of[item]
            if row >= 0 and col >= 0:
                expected[t, h] = weights[row, col]
    assert np.array_equal(model.contributions(history, items), expected)


def test_missing_values_are_catalog_shares(engine):
    catalog = engine.catalog
    checked = 0
    for user in USERS:
        history = engine.user_history(user)
        listed = engine.recommend(history, k=50, explain=False)
        top = [r.position for r in listed[:10]]
        explanation = engine.explain(Query(user, history), listed[-1].position)

        def share(items, field, value):
            return sum(value in catalog.attributes[field][p] for p in items) / len(items)

        for missing in explanation.why_not.missing_values:
            assert missing.value not in catalog.attributes[missing.field][explanation.position]
            expected = share(history, missing.field, missing.value)
            assert missing.history_share == pytest.approx(expected, abs=1e-12)
            assert missing.top_share == pytest.approx(share(top, missing.field, missing.value))
            assert missing.history_share >= 0.1 and missing.top_share >= 0.3
            checked += 1
    assert checked >= 5
