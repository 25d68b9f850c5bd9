"""Names for the clusters an index's levels form (HyPE's readable generation path).

Every prefix of an index is a cluster of items. A cluster is named by the attribute
values that characterise it (frequent inside, rare outside: share × idf, the attribute
graph's own weighting) and by its best-known titles, so a generation path reads like
"Animation, Children (e.g. Toy Story) › Pixar, Comedy (e.g. Up)".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from whyrec.data.catalog import Catalog
from whyrec.graph.attributes import AttributeGraph
from whyrec.models.generative.trie import Trie

MIN_SHARE = 0.3
"""A value names a cluster only when at least this share of its items have it."""

VALUES_PER_LABEL = 2
TITLES_PER_LABEL = 2


def cluster_labels(trie: Trie, catalog: Catalog, popularity: np.ndarray) -> list[np.ndarray]:
    """One label per node for each depth 1 .. length - 1 (leaves are the items themselves)."""
    graph = AttributeGraph.from_catalog(catalog)
    labels = []
    for depth in range(1, trie.length):
        nodes = trie.item_nodes[:, depth]
        n_nodes = len(trie.prefixes[depth])
        membership = sp.csr_matrix(
            (np.ones(len(nodes)), (nodes, np.arange(len(nodes)))), shape=(n_nodes, len(nodes))
        )
        sizes = np.asarray(membership.sum(axis=1)).ravel()
        values = _characteristic_values(membership, sizes, graph)
        titles = _best_known_titles(nodes, n_nodes, popularity, catalog)
        labels.append(
            np.array(
                [_label(v, t) for v, t in zip(values, titles, strict=True)],
                dtype=str,
            )
        )
    return labels


def _characteristic_values(
    membership: sp.csr_matrix, sizes: np.ndarray, graph: AttributeGraph
) -> list[list[str]]:
    if graph.n_values == 0:
        return [[] for _ in sizes]
    counts = (membership @ graph.incidence).toarray()
    share = counts / np.maximum(sizes, 1.0)[:, None]
    strength = np.where(share >= MIN_SHARE, share * graph.idf[None, :], 0.0)
    best = np.argsort(-strength, axis=1, kind="stable")[:, :VALUES_PER_LABEL]
    return [
        [graph.value_labels[v] for v in row if strength[node, v] > 0]
        for node, row in enumerate(best)
    ]


def _best_known_titles(
    nodes: np.ndarray, n_nodes: int, popularity: np.ndarray, catalog: Catalog
) -> list[list[str]]:
    order = np.lexsort((np.arange(len(nodes)), -popularity, nodes))
    grouped: list[list[str]] = [[] for _ in range(n_nodes)]
    for item in order.tolist():
        group = grouped[nodes[item]]
        if len(group) < TITLES_PER_LABEL:
            group.append(catalog.titles[item])
    return grouped


def _label(values: list[str], titles: list[str]) -> str:
    example = f"e.g. {'; '.join(titles)}" if titles else ""
    if values and example:
        return f"{', '.join(values)} ({example})"
    return ", ".join(values) or example
