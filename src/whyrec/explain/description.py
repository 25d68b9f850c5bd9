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
from whyrec.explain.explanation import DescriptionMatch
from whyrec.text.query_blend import MATCH, NEIGHBOURS_PART, POPULARITY

CITED_NEIGHBOURS = 3
"""Co-chosen titles named per item: the ones whose own match lifted it most."""


def _own_values(
    catalog: Catalog, position: int, named: list[tuple[str, str, float]]
) -> tuple[tuple[str, str, float], ...]:
    """The named values this item carries (a description may name values it lacks)."""
    own = []
    for name, value, cosine in named:
        if value.lower() in {v.lower() for v in catalog.values(name, position)}:
            own.append((name, value, cosine))
    return tuple(own)


def _lifting_neighbours(
    catalog: Catalog,
    position: int,
    parts: dict[str, np.ndarray],
    neighbours: sp.csr_matrix | None,
) -> tuple[str, ...]:
    """Titles whose weighted (match + popularity) added most to this item's
    neighbours term, the largest positive ones first."""
    if neighbours is None or NEIGHBOURS_PART not in parts:
        return ()
    start, end = neighbours.indptr[position], neighbours.indptr[position + 1]
    columns = neighbours.indices[start:end]
    lift = neighbours.data[start:end] * (parts[MATCH][columns] + parts[POPULARITY][columns])
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
    """One `DescriptionMatch` per listed item (`positions`, in list order)."""
    out = []
    for index, position in enumerate(np.asarray(positions, dtype=np.int64).tolist()):
        out.append(
            DescriptionMatch(
                text=text,
                parts={name: float(values[position]) for name, values in parts.items()},
                cosine=float(cosines[index]),
                values=_own_values(catalog, position, named),
                chosen_by=int(popularity[position]),
                neighbours=_lifting_neighbours(catalog, position, parts, neighbours),
            )
        )
    return out
