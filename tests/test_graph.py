"""The item–attribute graph: structure, paths and personalized PageRank."""

from __future__ import annotations

import numpy as np
import pytest

from whyrec.data.catalog import Catalog
from whyrec.errors import NotFoundError, WhyrecError
from whyrec.graph import AttributeGraph


@pytest.fixture
def tiny_catalog() -> Catalog:
    """Five items; item 4 has no attributes at all (a dangling node)."""
    return Catalog(
        item_ids=["a", "b", "c", "d", "e"],
        titles=["A (1995)", "B (1996)", "C (2003)", "D (1984)", "E"],
        years=np.array([1995, 1996, 2003, 1984, np.nan]),
        attributes={
            "genres": [
                ("Comedy", "Animation"),
                ("Comedy",),
                ("Animation", "Comedy"),
                ("Drama",),
                (),
            ],
            "tags": [("pixar",), (), ("pixar",), (), ()],
        },
    )


def dense_pagerank(graph: AttributeGraph, seeds: np.ndarray, restart: float) -> np.ndarray:
    """Reference: solve the linear system of the same walk with dense numpy."""
    incidence = graph.incidence.toarray()
    n_items, n_values = incidence.shape
    n = n_items + n_values
    adjacency = np.zeros((n, n))
    adjacency[:n_items, n_items:] = incidence
    adjacency[n_items:, :n_items] = incidence.T
    degree = adjacency.sum(axis=0)
    transition = np.divide(adjacency, degree, out=np.zeros_like(adjacency), where=degree > 0)
    dangling = (degree == 0).astype(float)
    walk = transition + np.outer(seeds, dangling)  # dangling nodes jump to the seeds
    system = np.eye(n) - (1 - restart) * walk
    return np.linalg.solve(system, restart * seeds)


def test_graph_names_values_and_weights_rare_values_higher(tiny_catalog):
    graph = AttributeGraph.from_catalog(tiny_catalog)
    assert graph.incidence.shape == (5, 4)
    assert set(graph.value_names) == {
        "genres=Comedy",
        "genres=Animation",
        "genres=Drama",
        "tags=pixar",
    }
    comedy, pixar = graph.value_node("genres=Comedy"), graph.value_node("TAGS=PIXAR")
    assert graph.item_frequency[comedy] == 3 and graph.item_frequency[pixar] == 2
    assert graph.idf[pixar] > graph.idf[comedy]
    assert sorted(graph.items_with(pixar).tolist()) == [0, 2]
    with pytest.raises(NotFoundError):
        graph.value_node("genres=Western")


def test_paths_go_through_shared_values_heaviest_first(tiny_catalog):
    graph = AttributeGraph.from_catalog(tiny_catalog)
    paths = graph.paths(np.array([0, 1, 3]), target=2)
    names = [(p.source, f"{p.field}={p.value}") for p in paths]
    # A shares comedy, animation and pixar with C; B only comedy; D (drama) nothing
    assert set(names) == {
        (0, "genres=Comedy"),
        (0, "genres=Animation"),
        (0, "tags=pixar"),
        (1, "genres=Comedy"),
    }
    weights = [p.weight for p in paths]
    assert weights == sorted(weights, reverse=True)
    # the rarer values (pixar, animation: 2 items each) come before comedy (3 items)
    assert {paths[0].value, paths[1].value} == {"pixar", "Animation"}
    idf = graph.idf[graph.value_node("genres=Comedy")]
    weighted = graph.paths(np.array([0, 1]), target=2, source_weights=np.array([0.5, 2.0]))
    comedy_from_b = next(p for p in weighted if p.source == 1)
    assert comedy_from_b.weight == pytest.approx(2.0 * idf)


@pytest.mark.parametrize("restart", [0.15, 0.5])
def test_personalized_pagerank_sums_to_one_and_matches_dense_reference(tiny_catalog, restart):
    graph = AttributeGraph.from_catalog(tiny_catalog)
    items, values = graph.personalized_pagerank(
        seed_items=[0, 4], seed_values=["tags=pixar"], restart=restart, tol=1e-14, max_iter=2000
    )
    assert items.sum() + values.sum() == pytest.approx(1.0, abs=1e-10)
    seeds = np.zeros(graph.n_items + graph.n_values)
    seeds[[0, 4, graph.n_items + graph.value_node("tags=pixar")]] = 1 / 3
    reference = dense_pagerank(graph, seeds, restart)
    np.testing.assert_allclose(np.concatenate([items, values]), reference, atol=1e-9)


def test_pagerank_favours_items_near_the_seed(tiny_catalog):
    graph = AttributeGraph.from_catalog(tiny_catalog)
    items, _ = graph.personalized_pagerank(seed_items=[0])
    # C shares three values with A, B one, D none
    assert items[2] > items[1] > items[3]


def test_pagerank_on_real_catalog_sums_to_one(ml_core):
    graph = AttributeGraph.from_catalog(ml_core.catalog)
    toy_story = ml_core.catalog.position("1")
    items, values = graph.personalized_pagerank(
        seed_items=[toy_story], seed_values=["genres=Comedy"]
    )
    assert items.sum() + values.sum() == pytest.approx(1.0, abs=1e-8)
    assert (items >= 0).all() and (values >= 0).all()
    best_other = np.argsort(-items)[:20]
    assert any(
        "Animation" in ml_core.catalog.values("genres", p) for p in best_other if p != toy_story
    )


def test_pagerank_needs_a_seed(tiny_catalog):
    graph = AttributeGraph.from_catalog(tiny_catalog)
    with pytest.raises(WhyrecError):
        graph.personalized_pagerank()
