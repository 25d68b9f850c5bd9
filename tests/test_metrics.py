"""Metrics against hand-computed values and against a plain-Python reading of docs/metrics.md."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from whyrec.evaluation import metrics as m

# Two users over a six-item catalog.
# user 0: list [3, 1, 4, 0], relevant {0, 1, 5}  → hits at ranks 2 and 4
# user 1: list [2] padded to 4, relevant {2}      → hit at rank 1
RECOMMENDED = np.array([[3, 1, 4, 0], [2, -1, -1, -1]])
RELEVANT = sp.csr_matrix((np.ones(4), ([0, 0, 0, 1], [0, 1, 5, 2])), shape=(2, 6), dtype=np.float32)
N_RELEVANT = np.array([3, 1])
TRAIN = sp.csr_matrix((np.ones(3), ([0, 1, 1], [2, 0, 3])), shape=(2, 6), dtype=np.float32)
POPULARITY = np.array([10, 5, 3, 1, 1, 0])  # Σφ = 20; head = {0, 1, 2} (10+5+3 = 18 ≥ 16)
LOG3, LOG5 = 1 / math.log2(3), 1 / math.log2(5)
DISC4 = 1 + LOG3 + 0.5 + LOG5


@pytest.fixture
def hits():
    return m.hit_matrix(RECOMMENDED, RELEVANT)


def test_hit_matrix_marks_relevant_slots_and_never_padding(hits):
    assert hits.tolist() == [[False, True, False, True], [True, False, False, False]]


def test_accuracy_metrics_by_hand(hits):
    assert m.precision(hits, 4) == pytest.approx([0.5, 0.25])
    assert m.recall(hits, N_RELEVANT, 4) == pytest.approx([2 / 3, 1.0])
    assert m.recall(hits, N_RELEVANT, 2) == pytest.approx([1 / 3, 1.0])
    assert m.recall_norm(hits, N_RELEVANT, 2) == pytest.approx([1 / 2, 1.0])
    assert m.ndcg(hits, N_RELEVANT, 4) == pytest.approx([(LOG3 + LOG5) / (1 + LOG3 + 0.5), 1.0])
    assert m.ndcg(hits, N_RELEVANT, 2) == pytest.approx([LOG3 / (1 + LOG3), 1.0])
    # AP@4 = (P@2 + P@4) / min(3, 4) = (1/2 + 2/4) / 3; AP@2 = (1/2) / min(3, 2)
    assert m.average_precision(hits, N_RELEVANT, 4) == pytest.approx([1 / 3, 1.0])
    assert m.average_precision(hits, N_RELEVANT, 2) == pytest.approx([1 / 4, 1.0])
    assert m.reciprocal_rank(hits, 4) == pytest.approx([0.5, 1.0])
    assert m.reciprocal_rank(hits, 1) == pytest.approx([0.0, 1.0])
    assert m.hit_rate(hits, 1) == pytest.approx([0.0, 1.0])
    # F1 = 2·(1/2)·(2/3) / (1/2 + 2/3) = 4/7; user 1: 2·(1/4)·1 / (5/4) = 2/5
    assert m.f1(hits, N_RELEVANT, 4) == pytest.approx([4 / 7, 2 / 5])


def test_long_tail_is_what_remains_after_80_percent_of_interactions():
    assert m.long_tail_mask(POPULARITY).tolist() == [False, False, False, True, True, True]


def test_popularity_metrics_by_hand(hits):
    tail = m.long_tail_mask(POPULARITY)
    assert m.arp(RECOMMENDED, 4, POPULARITY) == pytest.approx([(1 + 5 + 1 + 10) / 4, 3.0])
    assert m.aclt(RECOMMENDED, 4, tail) == pytest.approx([2, 0])
    assert m.aplt(RECOMMENDED, 4, tail) == pytest.approx([0.5, 0.0])
    # EPC with |U_train| = 10: item 1 has novelty 0.5, item 0 novelty 0, item 2 novelty 0.7.
    assert m.epc(hits, RECOMMENDED, 4, POPULARITY, 10) == pytest.approx(
        [LOG3 * 0.5 / DISC4, 0.7 / DISC4]
    )
    # EFD: −log2(5/20) = 2 for item 1, −log2(10/20) = 1 for item 0, −log2(3/20) for item 2.
    assert m.efd(hits, RECOMMENDED, 4, POPULARITY) == pytest.approx(
        [(2 * LOG3 + LOG5) / DISC4, -math.log2(3 / 20) / DISC4]
    )


def test_aggregate_metrics_by_hand(hits):
    tail = m.long_tail_mask(POPULARITY)
    assert m.item_coverage(RECOMMENDED, 4, 6) == (5, pytest.approx(5 / 6))
    # five items once each, one never: p = [0, .2, .2, .2, .2, .2]; G = Σ(2j−7)p / 5 = 0.2
    assert m.gini(RECOMMENDED, 4, 6) == pytest.approx(0.2)
    assert m.gini(np.array([[1, 1], [1, 1]]), 2, 6) == pytest.approx(1.0)
    assert m.gini(np.arange(6).reshape(2, 3), 3, 6) == pytest.approx(0.0)
    # head recs 3 of 4 available (user 0: {0,1}, user 1: {1,2}); tail 2 of 5 ({3,4,5}+{4,5})
    rates = np.array([3 / 4, 2 / 5])
    assert m.pop_rsp(RECOMMENDED, 4, tail, TRAIN) == pytest.approx(rates.std() / rates.mean())
    # relevant head {0,1}+{2} all found, relevant tail {5} missed: P = [1, 0] → 1
    assert m.pop_reo(hits, RECOMMENDED, 4, tail, RELEVANT) == pytest.approx(1.0)


def test_k_below_one_is_rejected(hits):
    with pytest.raises(ValueError):
        m.precision(hits, 0)


# ----- a deliberately naive second implementation -------------------------------------------
def _naive(recommended, relevant_sets, train_sets, popularity, n_items, k, n_train_users):
    """docs/metrics.md read literally, one user and one rank at a time."""
    disc = [1 / math.log2(r + 1) for r in range(1, k + 1)]
    total_phi = sum(popularity)
    order = sorted(range(n_items), key=lambda i: (-popularity[i], i))
    head, running = set(), 0
    for item in order:
        if running >= 0.8 * total_phi:
            break
        head.add(item)
        running += popularity[item]
    tail = set(range(n_items)) - head
    per_user = {
        name: []
        for name in [
            "precision",
            "recall",
            "ndcg",
            "map",
            "mrr",
            "hr",
            "f1",
            "epc",
            "efd",
            "aclt",
            "aplt",
            "arp",
        ]
    }
    counts = [0] * n_items
    rsp = {"head": [0, 0], "tail": [0, 0]}
    reo = {"head": [0, 0], "tail": [0, 0]}
    for row, rel, seen in zip(recommended, relevant_sets, train_sets, strict=True):
        lst = [int(i) for i in row[:k] if i >= 0]
        for item in lst:
            counts[item] += 1
        found = [item in rel for item in lst]
        n_hits = sum(found)
        p, r = n_hits / k, n_hits / len(rel)
        per_user["precision"].append(p)
        per_user["recall"].append(r)
        ideal = sum(disc[: min(len(rel), k)])
        per_user["ndcg"].append(sum(d for d, f in zip(disc, found, strict=False) if f) / ideal)
        ap = sum(sum(found[: r_ + 1]) / (r_ + 1) for r_ in range(len(lst)) if found[r_])
        per_user["map"].append(ap / min(len(rel), k))
        first = next((r_ + 1 for r_, f in enumerate(found) if f), None)
        per_user["mrr"].append(1 / first if first else 0.0)
        per_user["hr"].append(1.0 if n_hits else 0.0)
        per_user["f1"].append(2 * p * r / (p + r) if p + r else 0.0)
        norm = sum(disc)
        per_user["epc"].append(
            sum(
                disc[r_] * (1 - popularity[it] / n_train_users)
                for r_, it in enumerate(lst)
                if found[r_]
            )
            / norm
        )
        per_user["efd"].append(
            sum(
                disc[r_] * -math.log2(max(popularity[it], 1) / total_phi)
                for r_, it in enumerate(lst)
                if found[r_]
            )
            / norm
        )
        n_tail = sum(item in tail for item in lst)
        per_user["aclt"].append(n_tail)
        per_user["aplt"].append(n_tail / len(lst) if lst else 0.0)
        per_user["arp"].append(sum(popularity[i] for i in lst) / len(lst) if lst else 0.0)
        for name, group in (("head", head), ("tail", tail)):
            rsp[name][0] += sum(item in group for item in lst)
            rsp[name][1] += len(group - seen)
            reo[name][0] += sum(item in group and item in rel for item in lst)
            reo[name][1] += len(group & rel)
    shares = sorted(c / sum(counts) for c in counts)
    gini = sum((2 * j - n_items - 1) * s for j, s in enumerate(shares, start=1)) / (n_items - 1)

    def parity(groups):
        rates = [a / b if b else 0.0 for a, b in groups.values()]
        mean = sum(rates) / 2
        std = math.sqrt(sum((x - mean) ** 2 for x in rates) / 2)
        return std / mean if mean else float("nan")

    aggregate = {
        "coverage": sum(c > 0 for c in counts),
        "gini": gini,
        "poprsp": parity(rsp),
        "popreo": parity(reo),
    }
    return per_user, aggregate


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_metrics_match_naive_reading(seed):
    rng = np.random.default_rng(seed)
    n_users, n_items, k_max = 25, 40, 12
    popularity = rng.integers(0, 30, n_items)
    train_sets, relevant_sets, rows = [], [], []
    for _ in range(n_users):
        items = rng.permutation(n_items)
        train_sets.append(set(items[: rng.integers(1, 8)].tolist()))
        candidates = items[len(train_sets[-1]) :]
        relevant_sets.append(set(candidates[: rng.integers(1, 6)].tolist()))
        listed = rng.permutation(candidates)[: rng.integers(3, k_max + 1)]
        rows.append(np.pad(listed, (0, k_max - len(listed)), constant_values=-1))
    recommended = np.array(rows)

    def to_csr(sets):
        r = [u for u, s in enumerate(sets) for _ in s]
        c = [i for s in sets for i in s]
        return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(n_users, n_items))

    relevant, train = to_csr(relevant_sets), to_csr(train_sets)
    n_rel = np.array([len(s) for s in relevant_sets])
    hits = m.hit_matrix(recommended, relevant)
    tail = m.long_tail_mask(popularity)
    for k in (1, 5, 10):
        naive, aggregate = _naive(
            recommended, relevant_sets, train_sets, popularity, n_items, k, n_train_users=50
        )
        fast = {
            "precision": m.precision(hits, k),
            "recall": m.recall(hits, n_rel, k),
            "ndcg": m.ndcg(hits, n_rel, k),
            "map": m.average_precision(hits, n_rel, k),
            "mrr": m.reciprocal_rank(hits, k),
            "hr": m.hit_rate(hits, k),
            "f1": m.f1(hits, n_rel, k),
            "epc": m.epc(hits, recommended, k, popularity, 50),
            "efd": m.efd(hits, recommended, k, popularity),
            "aclt": m.aclt(recommended, k, tail),
            "aplt": m.aplt(recommended, k, tail),
            "arp": m.arp(recommended, k, popularity),
        }
        for name, values in fast.items():
            np.testing.assert_allclose(values, naive[name], rtol=1e-9, atol=1e-12, err_msg=name)
        assert m.item_coverage(recommended, k, n_items)[0] == aggregate["coverage"]
        assert m.gini(recommended, k, n_items) == pytest.approx(aggregate["gini"])
        assert m.pop_rsp(recommended, k, tail, train) == pytest.approx(
            aggregate["poprsp"], nan_ok=True
        )
        assert m.pop_reo(hits, recommended, k, tail, relevant) == pytest.approx(
            aggregate["popreo"], nan_ok=True
        )
