"""Is the evidence we cite really what drives the recommendation? Measured, not assumed.

For each test user we take the model's top-k list and, for every listed item, the history
items its explanation cites (largest positive contributions, or occlusion drops). Then
we change the history and re-score in batches:

- deletion curve: remove the top-1..m cited items; where does the item fall?
- insertion curve: start from an empty history and add the cited items back one by one;
- PN@k (necessity, CountER, Tan et al. 2021): share of items that leave the top-k when
  the `evidence_size` cited items are removed; PS@k (sufficiency): share that stay in the
  top-k when only those items are kept; F_NS their harmonic mean;
- the same for random history items of the same size (seeded), the baseline that gives
  the figures meaning;
- MEP@k (Abdollahi & Nasraoui 2016): share of listed items that at least
  `mep_threshold` of the user's `mep_neighbours` nearest neighbours (cosine on the
  training matrix) interacted with. It rates the list's explainability by neighbours,
  independently of the cited evidence.

Candidates are always the items outside the user's full training history: a removed
history item is still known to the user, so it may not re-enter the list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from whyrec.data.splits import Split
from whyrec.errors import WhyrecError
from whyrec.explain.attribution import attribute
from whyrec.models.base import Recommender, histories_to_csr
from whyrec.ranking import NO_ITEM, unseen_top_k

SCORE_BATCH_ROWS = 1024
"""Rows per `model.score` call: bounds memory at rows × items float32 scores."""


@dataclass
class _Pairs:
    """One row per (test user, listed item): the user's history, the item and its cited
    evidence (best first), plus a random ordering of the history for the baseline."""

    users: np.ndarray
    targets: np.ndarray
    histories: list[np.ndarray]
    cited: list[np.ndarray]
    shuffled: list[np.ndarray]
    method: str


def first_occurrences(history: np.ndarray) -> np.ndarray:
    """Distinct positions in first-seen order (time order matters to sequential models)."""
    _, first = np.unique(history, return_index=True)
    return history[np.sort(first)]


def _keep_order(history: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """The chosen history items, in the history's own order."""
    return history[np.isin(history, chosen)]


def _top_k_lists(model: Recommender, histories: list[np.ndarray], k: int) -> list[np.ndarray]:
    """Each history's top-k unseen items (the shared tie rule, `whyrec.ranking`)."""
    lists = []
    for start in range(0, len(histories), SCORE_BATCH_ROWS):
        chunk = histories[start : start + SCORE_BATCH_ROWS]
        scores = np.array(model.score(chunk), dtype=np.float64)
        best = unseen_top_k(scores, chunk, k)
        lists.extend(row[row != NO_ITEM] for row in best)
    return lists


def counterfactual_ranks(
    model: Recommender,
    histories: list[np.ndarray],
    targets: np.ndarray,
    seen: sp.csr_matrix,
) -> np.ndarray:
    """Rank (1-based) of each target when the model is given the modified histories.

    Row r is ranked among the items that are not in `seen[r]` (the original history);
    an item the model can no longer score ranks last.
    """
    ranks = np.empty(len(targets), dtype=np.int64)
    for start in range(0, len(targets), SCORE_BATCH_ROWS):
        stop = min(start + SCORE_BATCH_ROWS, len(targets))
        scores = np.array(model.score(histories[start:stop]), dtype=np.float32)
        scores[seen[start:stop].nonzero()] = -np.inf  # seen items are never candidates
        rows = np.arange(stop - start)
        target = targets[start:stop]
        own = scores[rows, target]
        rank = (scores > own[:, None]).sum(axis=1) + 1
        # ties go to the lower position (as engine.top_k); they are rare, so only rows
        # that have one pay for the exact count
        tied = np.flatnonzero(np.isfinite(own) & ((scores == own[:, None]).sum(axis=1) > 1))
        for row in tied:
            rank[row] += int((scores[row, : target[row]] == own[row]).sum())
        lost = ~np.isfinite(own)
        rank[lost] = np.isfinite(scores[lost]).sum(axis=1) + 1
        ranks[start:stop] = rank
    return ranks


def _pairs(
    model: Recommender,
    histories: list[np.ndarray],
    users: np.ndarray,
    k: int,
    max_cited: int,
    rng: np.random.Generator,
) -> _Pairs:
    """List each user's top-k and cite, per listed item, up to `max_cited` history items
    with positive weight (one attribution call per user: exact, or one occlusion batch)."""
    lists = _top_k_lists(model, [histories[u] for u in users], k)
    pair_users: list[int] = []
    pair_targets: list[int] = []
    pair_histories: list[np.ndarray] = []
    cited: list[np.ndarray] = []
    shuffled: list[np.ndarray] = []
    method = "none"
    for user, listed in zip(users, lists, strict=True):
        if len(listed) == 0:
            continue
        history = histories[user]
        attribution = attribute(model, history, listed)
        method = attribution.method
        order = np.argsort(-attribution.weights, axis=1, kind="stable")[:, :max_cited]
        positive = np.take_along_axis(attribution.weights, order, axis=1) > 0
        for row, target in enumerate(listed.tolist()):
            pair_users.append(int(user))
            pair_targets.append(target)
            pair_histories.append(history)
            cited.append(history[order[row][positive[row]]])
            shuffled.append(rng.permutation(history))
    return _Pairs(
        users=np.asarray(pair_users, dtype=np.int64),
        targets=np.asarray(pair_targets, dtype=np.int64),
        histories=pair_histories,
        cited=cited,
        shuffled=shuffled,
        method=method,
    )


def _curve_point(ranks: np.ndarray, k: int) -> dict:
    return {
        "mean_rank": float(ranks.mean()) if len(ranks) else float("nan"),
        "median_rank": float(np.median(ranks)) if len(ranks) else float("nan"),
        f"in_top{k}": float((ranks <= k).mean()) if len(ranks) else float("nan"),
    }


def _fns(necessity: float, sufficiency: float) -> float:
    """Harmonic mean of PN and PS (NaN when either is undefined, 0 when both are 0)."""
    total = necessity + sufficiency
    if np.isnan(total):
        return float("nan")
    return 2 * necessity * sufficiency / total if total > 0 else 0.0


def _share(mask: np.ndarray) -> float:
    """Mean of a boolean array; NaN when there is nothing to average (no explained item)."""
    return float(mask.mean()) if len(mask) else float("nan")


def mean_explainability_precision(
    matrix: sp.csr_matrix,
    users: np.ndarray,
    lists: list[np.ndarray],
    neighbours: int,
    threshold: float,
) -> float:
    """MEP@k: mean over users of the share of listed items that ≥ threshold of the user's
    `neighbours` most cosine-similar users (training matrix, self excluded, similarity > 0)
    interacted with. The share divides by `neighbours`, as in Abdollahi & Nasraoui."""
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    normalized = sp.csr_matrix(
        sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ matrix
    )
    shares = []
    for start in range(0, len(users), SCORE_BATCH_ROWS):
        chunk = users[start : start + SCORE_BATCH_ROWS]
        similarity = (normalized[chunk] @ normalized.T).toarray()
        similarity[np.arange(len(chunk)), chunk] = -np.inf
        n = min(neighbours, similarity.shape[1] - 1)
        nearest = np.argpartition(-similarity, n - 1, axis=1)[:, :n]
        close = np.take_along_axis(similarity, nearest, axis=1) > 0
        rows = np.repeat(np.arange(len(chunk)), n)[close.ravel()]
        selector = sp.csr_matrix(
            (np.ones(len(rows)), (rows, nearest.ravel()[close.ravel()])),
            shape=(len(chunk), matrix.shape[0]),
        )
        neighbour_counts = (selector @ matrix).tocsr()
        for row, user_list in enumerate(lists[start : start + len(chunk)]):
            if len(user_list) == 0:
                continue
            counts = neighbour_counts[row].toarray().ravel()[user_list]
            shares.append(float((counts / neighbours >= threshold).mean()))
    return float(np.mean(shares)) if shares else float("nan")


def explanation_fidelity(
    model: Recommender,
    split: Split,
    k: int = 10,
    n_users: int | None = None,
    seed: int = 0,
    evidence_size: int = 3,
    max_removed: int = 5,
    mep_neighbours: int = 50,
    mep_threshold: float = 0.3,
) -> dict:
    """Faithfulness of cited history evidence for a fitted model over a split's test users.

    Returns {"pn@k", "ps@k", "fns@k", the same with "_random", "mep@k", "mep@k_random",
    "deletion_curve", "insertion_curve", "settings"}. PN/PS count only listed items that
    have at least one cited (positively contributing) history item; random evidence
    has the same size as the cited evidence of that item. "mep@k_random" is MEP of k
    random unseen items per user, the floor MEP must be read against. The MEP defaults
    (50 neighbours, 30%) separate models on ml-latest-small: at 10% every EASE list is
    fully "explainable" (MEP 1.0), which says nothing.
    """
    if k < 1 or evidence_size < 1 or max_removed < evidence_size:
        raise WhyrecError("need k >= 1, evidence_size >= 1 and max_removed >= evidence_size")
    train = split.train
    if model.n_items_ != train.n_items:
        raise WhyrecError("the model was not fitted on this split's catalog")
    histories = [first_occurrences(h) for h in train.histories()]
    test_rows = np.unique(split.test.codes[0])
    users = np.array([u for u in test_rows if len(histories[u])], dtype=np.int64)
    rng = np.random.default_rng(seed)
    if n_users is not None and n_users < len(users):
        users = np.sort(rng.choice(users, size=n_users, replace=False))
    if len(users) == 0:
        raise WhyrecError("no test user has training interactions")

    pairs = _pairs(model, histories, users, k, max_removed, rng)
    explained = np.array([len(c) > 0 for c in pairs.cited], dtype=bool)
    keep = np.flatnonzero(explained)
    histories_kept = [pairs.histories[i] for i in keep]
    targets = pairs.targets[keep]
    seen = histories_to_csr(histories_kept, train.n_items)
    cited = [pairs.cited[i] for i in keep]
    sizes = np.array([len(c) for c in cited], dtype=np.int64)
    shuffled = [pairs.shuffled[i] for i in keep]

    def evidence(m: int, random: bool) -> list[np.ndarray]:
        # random evidence of the same size as the cited evidence at this step
        return [
            s[: min(m, n)] if random else c[:m]
            for c, s, n in zip(cited, shuffled, sizes, strict=True)
        ]

    def ranks_without(chosen: list[np.ndarray]) -> np.ndarray:
        reduced = [h[~np.isin(h, e)] for h, e in zip(histories_kept, chosen, strict=True)]
        return counterfactual_ranks(model, reduced, targets, seen)

    def ranks_with_only(chosen: list[np.ndarray]) -> np.ndarray:
        kept = [_keep_order(h, e) for h, e in zip(histories_kept, chosen, strict=True)]
        return counterfactual_ranks(model, kept, targets, seen)

    deletion, insertion = [], []
    pn = ps = pn_random = ps_random = float("nan")
    empty = ranks_with_only([np.zeros(0, np.int64)] * len(keep))
    insertion.append({"added": 0, **_curve_point(empty, k), **_suffix(_curve_point(empty, k))})
    for m in range(1, max_removed + 1):
        removed_cited, removed_random = (
            ranks_without(evidence(m, False)),
            ranks_without(evidence(m, True)),
        )
        only_cited, only_random = (
            ranks_with_only(evidence(m, False)),
            ranks_with_only(evidence(m, True)),
        )
        deletion.append(
            {
                "removed": m,
                **_curve_point(removed_cited, k),
                **_suffix(_curve_point(removed_random, k)),
            }
        )
        insertion.append(
            {"added": m, **_curve_point(only_cited, k), **_suffix(_curve_point(only_random, k))}
        )
        if m == evidence_size:
            pn, pn_random = _share(removed_cited > k), _share(removed_random > k)
            ps, ps_random = _share(only_cited <= k), _share(only_random <= k)

    lists = [pairs.targets[pairs.users == u] for u in users]
    mep = mean_explainability_precision(train.matrix, users, lists, mep_neighbours, mep_threshold)
    trained_items = np.flatnonzero(train.matrix.getnnz(axis=0) > 0)
    random_lists = [
        rng.choice(
            np.setdiff1d(trained_items, histories[u]),
            size=min(len(listed), len(trained_items) - len(histories[u])),
            replace=False,
        )
        for u, listed in zip(users, lists, strict=True)
    ]
    mep_random = mean_explainability_precision(
        train.matrix, users, random_lists, mep_neighbours, mep_threshold
    )
    return {
        f"pn@{k}": pn,
        f"ps@{k}": ps,
        f"fns@{k}": _fns(pn, ps),
        f"pn@{k}_random": pn_random,
        f"ps@{k}_random": ps_random,
        f"fns@{k}_random": _fns(pn_random, ps_random),
        f"mep@{k}": mep,
        f"mep@{k}_random": mep_random,
        "deletion_curve": deletion,
        "insertion_curve": insertion,
        "settings": {
            "k": k,
            "split": split.describe(),
            "users": len(users),
            "listed_items": len(pairs.targets),
            "explained_items": len(keep),
            "mean_cited": float(np.minimum(sizes, evidence_size).mean()) if len(keep) else 0.0,
            "evidence_size": evidence_size,
            "attribution": pairs.method,
            "mep_neighbours": mep_neighbours,
            "mep_threshold": mep_threshold,
            "seed": seed,
            "candidates": "items outside the user's full training history",
        },
    }


def _suffix(point: dict) -> dict:
    return {f"{key}_random": value for key, value in point.items()}
