"""The prefix tree of valid item indices, as dense numpy tables.

Constrained decoding only ever needs "which tokens may follow this prefix" and "which
node does a token lead to": one (nodes × codebook size) table per level answers both,
so beam search and exhaustive scoring step through the tree with array look-ups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Trie:
    """Node ids per depth (the root is node 0 at depth 0) and the tables between them.

    `children[d][node, token]` is the child node at depth d + 1, or -1 when no item's
    index continues that way; `item_nodes[p, d]` is item p's node at depth d;
    `leaf_items[node]` is the item at a leaf; `prefixes[d]` holds every depth-d node's
    tokens (nodes × d); `item_counts[d][node]` is how many items lie below a node.
    """

    sizes: list[int]
    children: list[np.ndarray]
    item_nodes: np.ndarray
    leaf_items: np.ndarray
    prefixes: list[np.ndarray]
    item_counts: list[np.ndarray]

    @classmethod
    def build(cls, codes: np.ndarray, sizes: list[int]) -> Trie:
        codes = np.asarray(codes, dtype=np.int64)
        n_items, length = codes.shape
        item_nodes = np.zeros((n_items, length + 1), dtype=np.int64)
        children, prefixes = [], [np.zeros((1, 0), dtype=np.int64)]
        n_parents = 1
        for depth in range(length):
            key = item_nodes[:, depth] * sizes[depth] + codes[:, depth]
            unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
            item_nodes[:, depth + 1] = inverse.ravel()
            table = np.full((n_parents, sizes[depth]), -1, dtype=np.int64)
            table[unique // sizes[depth], unique % sizes[depth]] = np.arange(len(unique))
            children.append(table)
            prefixes.append(codes[first, : depth + 1])
            n_parents = len(unique)
        leaf_items = np.empty(n_parents, dtype=np.int64)
        leaf_items[item_nodes[:, length]] = np.arange(n_items)
        counts = [
            np.bincount(item_nodes[:, depth], minlength=len(prefixes[depth]))
            for depth in range(length + 1)
        ]
        return cls(list(sizes), children, item_nodes, leaf_items, prefixes, counts)

    @property
    def length(self) -> int:
        return len(self.children)

    def branching(self, depth: int) -> np.ndarray:
        """Number of children of every node at `depth`."""
        return (self.children[depth] >= 0).sum(axis=1)

    def alive(self, excluded: np.ndarray) -> list[np.ndarray]:
        """Per depth, which nodes still lead to at least one item outside `excluded`.

        Counts the excluded items below each node (work in the size of `excluded`, not of
        the catalog: this runs once per generated list)."""
        excluded = np.unique(np.asarray(excluded, dtype=np.int64))
        nodes = self.item_nodes[excluded]
        return [
            counts > np.bincount(nodes[:, depth], minlength=len(counts))
            for depth, counts in enumerate(self.item_counts)
        ]
