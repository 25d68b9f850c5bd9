"""How much popularity weighs next to the text match of a free-text query, fitted at train time.

A description ("a shark terrorizes a beach town") fits many items about as well as
words go; among them people mostly mean the ones they know. The weight of z(log
popularity) next to z(text match) is the prior's strength, and it depends on the catalog
(how much its text says, how skewed its popularity is), so it is fitted, not fixed.

Pseudo-queries come from the data itself: a target item is drawn from a slice of the
training interactions (items in proportion to how often people chose them, as the
things people describe are), and the query is one to three of its own attribute
values, drawn in proportion to how specific they are (log of catalog size over the
value's item count: a description names what sets an item apart, rarely only its
broadest category). Those values are then taken *out* of the target's text, which is encoded
again: a real description names what the catalog does not say word for word ("dreams
within dreams" for a film tagged "dreamlike"), so the target must be found through the
rest of its text and the popularity prior, exactly as with a real description.

A second, collaborative step may help: each item's score is also averaged over its
nearest neighbours in the co-occurrence space of the training data (shrunk item-item
cosine), so well-known items next to the match rise with it. Its weight is fitted on
the same pseudo-queries (0 = off). The pair with the best hit@10 over the slice wins
(the smallest weights on ties).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from whyrec.data.dataset import Dataset
from whyrec.explain.explanation import TERM_MATCH, TERM_NEIGHBOURS, TERM_POPULARITY

WEIGHTS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
SMOOTHING = (0.0, 0.25, 0.5, 1.0)
NEIGHBOURS = 20
"""Neighbours averaged by the collaborative step (a handful: the step is local)."""
SHRINK = 10.0
"""Cosine shrinkage of the neighbourhood, as `itemknn`'s default: rarely co-chosen pairs
count less."""
DEFAULT_WEIGHT = 1.0
"""For bundles trained without calibration: popularity and match on an equal z scale."""
PSEUDO_QUERIES = 900
VALUES_PER_QUERY = (1, 2, 3)
HIT_AT = 10


def _z(values: np.ndarray, axis: int = 0) -> np.ndarray:
    spread = values.std(axis=axis, keepdims=True)
    return (values - values.mean(axis=axis, keepdims=True)) / np.where(spread > 0, spread, 1.0)


def blend_parameters(info: dict | None) -> tuple[float, float]:
    """(popularity weight, smoothing weight) a bundle stores (defaults where it has none)."""
    fitted = ((info or {}).get("text_query") or {}).get("parameters", {})
    return (
        float(fitted.get("popularity_weight", DEFAULT_WEIGHT)),
        float(fitted.get("smoothing", 0.0)),
    )


def neighbour_average(train: Dataset) -> sp.csr_matrix:
    """Items × items: row i averages item i's `NEIGHBOURS` most co-chosen items."""
    from whyrec.models.itemknn import cosine_neighbours

    weights = cosine_neighbours(train.matrix, NEIGHBOURS, SHRINK).T.tocsr()
    sums = np.asarray(weights.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.where(sums > 0, sums, 1.0)) @ weights


def blend_parts(
    match: np.ndarray,
    prior: np.ndarray,
    weight: float,
    smoothing: float,
    neighbours: sp.csr_matrix | None,
) -> dict[str, np.ndarray]:
    """The blend's terms, kept apart so an explanation can cite each: z(match),
    w·z(log popularity), and s·(the neighbours' average of their sum)."""
    parts = {TERM_MATCH: _z(match), TERM_POPULARITY: weight * prior}
    if smoothing and neighbours is not None:
        base = parts[TERM_MATCH] + parts[TERM_POPULARITY]
        parts[TERM_NEIGHBOURS] = smoothing * np.asarray(neighbours @ base)
    return parts


def blend(
    match: np.ndarray,
    prior: np.ndarray,
    weight: float,
    smoothing: float,
    neighbours: sp.csr_matrix | None,
) -> np.ndarray:
    """z(match) + w·z(log popularity), then + s·(the neighbours' average of that)."""
    parts = blend_parts(match, prior, weight, smoothing, neighbours)
    scores = parts[TERM_MATCH] + parts[TERM_POPULARITY]
    if TERM_NEIGHBOURS in parts:
        scores = scores + parts[TERM_NEIGHBOURS]
    return scores


def _text_without(train: Dataset, position: int, dropped: set[str]) -> str:
    """The item's text (as `Catalog.text` writes it) with the picked values left out."""
    catalog = train.catalog
    parts = [catalog.titles[position]]
    for name, values in catalog.attributes.items():
        kept = [v for v in values[position] if v not in dropped]
        if kept:
            parts.append(f"{name}: {', '.join(kept)}")
    if catalog.descriptions and catalog.descriptions[position]:
        parts.append(catalog.descriptions[position])
    return ". ".join(parts)


def pseudo_queries(
    train: Dataset, count: int = PSEUDO_QUERIES, seed: int = 0
) -> tuple[list[str], list[int], list[str]]:
    """(query, target position, target text without the query's values) triples."""
    catalog = train.catalog
    rng = np.random.default_rng(seed)
    specificity = {
        (name, value): np.log(len(catalog) / count)
        for name in catalog.fields
        for value, count in catalog.value_counts(name).items()
    }
    frame = train.interactions
    draws = frame["item_id"].astype(str).sample(n=min(len(frame), count * 4), random_state=seed)
    queries: list[str] = []
    targets: list[int] = []
    texts: list[str] = []
    for draw, position in enumerate(catalog.positions(draws)):
        named = [
            (name, v)
            for name in catalog.fields
            for v in catalog.attributes[name][position]
            if not v.replace(".", "", 1).isdigit()
        ]
        size = VALUES_PER_QUERY[draw % len(VALUES_PER_QUERY)]  # per draw: never stalls
        weights = np.array([specificity[n] for n in named], dtype=np.float64)
        if len(named) <= size or np.count_nonzero(weights) < size:
            continue  # the target must keep something to be found by
        chosen = rng.choice(len(named), size, replace=False, p=weights / weights.sum())
        picked = [named[i][1] for i in chosen]
        queries.append(", ".join(picked))
        targets.append(int(position))
        texts.append(_text_without(train, int(position), set(picked)))
        if len(queries) >= count:
            break
    return queries, targets, texts


def calibrate_query_blend(train: Dataset, seed: int = 0, count: int = PSEUDO_QUERIES) -> dict:
    """The fitted weight and how it was found (for `bundle.json`)."""
    from whyrec.text.encoder import encode_items, encode_texts

    started = time.perf_counter()
    queries, targets, texts = pseudo_queries(train, count, seed)
    if len(queries) < 20:
        return {
            "parameters": {"popularity_weight": DEFAULT_WEIGHT},
            "note": f"only {len(queries)} pseudo-queries (items need two or more values)",
        }
    items = encode_items(train.catalog)
    query_vectors = encode_texts(queries, description="encoding pseudo-queries")
    held_out = encode_texts(texts, description="encoding held-out item texts")
    similarity = items @ query_vectors.T  # items × queries
    columns = np.arange(len(targets))
    similarity[targets, columns] = np.einsum("ij,ij->i", held_out, query_vectors)
    prior = _z(np.log1p(train.item_popularity().astype(np.float64)))[:, None]
    neighbours = neighbour_average(train)
    search = []
    best, best_hit = (DEFAULT_WEIGHT, 0.0), -1.0
    for smoothing in SMOOTHING:
        for weight in WEIGHTS:
            scores = blend(similarity, prior, weight, smoothing, neighbours)
            above = (scores > scores[targets, columns][None, :]).sum(axis=0)
            hit = float(np.mean(above < HIT_AT))
            search.append(
                {
                    "popularity_weight": weight,
                    "smoothing": smoothing,
                    f"hit@{HIT_AT}": round(hit, 4),
                }
            )
            if hit > best_hit:
                best, best_hit = (weight, smoothing), hit
    return {
        "parameters": {"popularity_weight": best[0], "smoothing": best[1]},
        "validation": {"pseudo_queries": len(queries), "values_per_query": VALUES_PER_QUERY},
        "search": search,
        "seconds": round(time.perf_counter() - started, 1),
    }
