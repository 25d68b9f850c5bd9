"""Evidence for items ranked by a description in words (`Query.text`).

A described request ranks by a sum of terms (`Engine.description_parts`): the text
match, the popularity prior, the co-chosen titles' average of those two, and the model's
score when a history was given too. The evidence cites each term's exact value, so the
parts add up to the score the list shows, plus what makes the match concrete: the
item's values the description names and the co-chosen titles that lifted it most.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from whyrec.data.catalog import Catalog
from whyrec.explain.explanation import (
    TERM_MATCH,
    TERM_NEIGHBOURS,
    TERM_POPULARITY,
    DescriptionMatch,
)

CITED_NEIGHBOURS = 3
"""Co-chosen titles named per item: the ones whose own match lifted it most."""


def _own_values(
    catalog: Catalog, position: int, named: list[tuple[str, str, float]]
) -> tuple[tuple[str, str, float], ...]:
    """The named values this item carries (a description may name values it lacks)."""
    have = {
        (name, v.lower())
        for name in {n for n, _, _ in named}
        for v in catalog.values(name, position)
    }
    return tuple(entry for entry in named if (entry[0], entry[1].lower()) in have)


def _lifting_neighbours(
    catalog: Catalog,
    position: int,
    parts: dict[str, np.ndarray],
    neighbours: sp.csr_matrix | None,
) -> tuple[str, ...]:
    """Titles whose weighted (match + popularity) added most to this item's
    neighbours term, the largest positive ones first."""
    if neighbours is None or TERM_NEIGHBOURS not in parts:
        return ()
    start, end = neighbours.indptr[position], neighbours.indptr[position + 1]
    columns = neighbours.indices[start:end]
    base = parts[TERM_MATCH][columns] + parts[TERM_POPULARITY][columns]
    lift = neighbours.data[start:end] * base
    order = np.argsort(-lift, kind="stable")[:CITED_NEIGHBOURS]
    return tuple(catalog.titles[int(columns[i])] for i in order if lift[i] > 0)


def description_evidence(
    text: str,
    positions: np.ndarray,
    parts: dict[str, np.ndarray],
    catalog: Catalog,
    popularity: np.ndarray,
    named: list[tuple[str, str, float]],
    cosines: np.ndarray,
    neighbours: sp.csr_matrix | None,
) -> list[DescriptionMatch]:
    """One `DescriptionMatch` per listed item (`positions`, in list order); the score's
    terms go to `Explanation.terms` (`terms_at`)."""
    out = []
    for index, position in enumerate(np.asarray(positions, dtype=np.int64).tolist()):
        out.append(
            DescriptionMatch(
                text=text,
                cosine=float(cosines[index]),
                values=_own_values(catalog, position, named),
                chosen_by=int(popularity[position]),
                neighbours=_lifting_neighbours(catalog, position, parts, neighbours),
            )
        )
    return out


def terms_at(parts: dict[str, np.ndarray], position: int) -> dict[str, float]:
    """One item's value of each named term of a summed score (`Explanation.terms`)."""
    return {name: float(values[position]) for name, values in parts.items()}
