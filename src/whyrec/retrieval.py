"""Approximate top-k retrieval (faiss) for models that score by a dot product.

iALS, BPR, Rel-MF, the text model and SASRec all score an item as ⟨query(history),
vector(item)⟩ (+ an item bias, folded into the vectors as one more coordinate). Exact
top-k reads every item vector per request: fine for 10k items, ~20 ms for 1M. Above a
catalogue-size threshold the engine asks an inverted-file index (faiss IVF-Flat)
instead, which reads only the `nprobe` closest of `nlist` clusters.

Maximum inner product is turned into nearest neighbour by the standard augmentation
(Bachrach et al. 2014): items get one extra coordinate √(M² − ‖x‖²), queries a 0, so the
L2-nearest item is the one with the largest inner product and clusters stay meaningful
whatever the vector norms.

Approximate is only useful when it is measured: at build time `nprobe` is raised until
recall@k against exact search, on sample queries drawn from the model's own users, reaches
`target_recall`; the measured recall is kept with the index (`ANNIndex.recall`) and the
index is saved next to the bundle so a service does not pay the build again.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whyrec.errors import BundleError, WhyrecError
from whyrec.ranking import top_k_rows

ANN_MIN_ITEMS = 100_000
"""Default catalogue size from which the engine retrieves approximately (env:
WHYREC_ANN_MIN_ITEMS). Below it exact scoring costs < 2 ms a request and is always right."""
DEFAULT_TARGET_RECALL = 0.97
"""Recall@k the build-time calibration aims for (a margin above the 0.95 goal)."""


@dataclass(frozen=True)
class EmbeddingSpace:
    """Item vectors such that score(history, item) = ⟨query(history), vector⟩.

    `positions` are the catalogue positions of the rows of `vectors`; items outside it
    cannot be scored by the model (never seen in training) and are never retrieved.
    """

    vectors: np.ndarray
    positions: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.positions):
            raise WhyrecError("embedding space: one vector per position is required")


def ann_min_items() -> int:
    """The configured threshold (WHYREC_ANN_MIN_ITEMS), else `ANN_MIN_ITEMS`."""
    raw = os.environ.get("WHYREC_ANN_MIN_ITEMS")
    if raw is None:
        return ANN_MIN_ITEMS
    try:
        return int(raw)
    except ValueError:
        raise WhyrecError(f"WHYREC_ANN_MIN_ITEMS must be an integer, got {raw!r}") from None


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k largest inner products per query (the reference for recall)."""
    k = min(k, len(vectors))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 64):
        out[start : start + 64] = top_k_rows(queries[start : start + 64] @ vectors.T, k)
    return out


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact top-k that the approximate top-k also returned."""
    k = exact.shape[1]
    hits = [len(np.intersect1d(f[f >= 0], e)) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits) / k) if len(hits) else 1.0


class ANNIndex:
    """A faiss IVF-Flat index over an embedding space, calibrated to a recall target."""

    def __init__(self, index, space: EmbeddingSpace, max_norm: float, meta: dict) -> None:
        self.index = index
        self.space = space
        self.max_norm = max_norm
        self.meta = meta

    # ----- building -----------------------------------------------------------------
    @classmethod
    def build(
        cls,
        space: EmbeddingSpace,
        queries: np.ndarray | None = None,
        *,
        k: int = 10,
        target_recall: float = DEFAULT_TARGET_RECALL,
        nlist: int | None = None,
        seed: int = 0,
    ) -> ANNIndex:
        """Train the clusters, add every item and choose the smallest nprobe reaching the
        target recall@k on `queries` (default: a sample of item vectors as queries)."""
        import faiss

        vectors = np.ascontiguousarray(space.vectors, dtype=np.float32)
        n, dim = vectors.shape
        if n < 2:
            raise WhyrecError("approximate retrieval needs at least two item vectors")
        norms = np.linalg.norm(vectors, axis=1)
        max_norm = float(norms.max())
        augmented = _augment_items(vectors, norms, max_norm)
        nlist = nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
        quantizer = faiss.IndexFlatL2(dim + 1)
        index = faiss.IndexIVFFlat(quantizer, dim + 1, nlist, faiss.METRIC_L2)
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        sample = augmented[rng.choice(n, min(n, 64 * nlist), replace=False)]
        index.train(sample)
        index.add(augmented)
        built = cls(index, space, max_norm, {"nlist": nlist, "k": k, "items": n, "dim": dim})
        if queries is None or len(queries) == 0:
            queries = vectors[rng.choice(n, min(n, 200), replace=False)]
        built.calibrate(np.asarray(queries, dtype=np.float32), k, target_recall)
        return built

    def calibrate(self, queries: np.ndarray, k: int, target_recall: float) -> float:
        """Raise nprobe (×1.5 a step) until recall@k ≥ target on these queries; returns recall."""
        exact = exact_top_k(np.asarray(self.space.vectors, dtype=np.float32), queries, k)
        nprobe, nlist = 1, self.meta["nlist"]
        while True:
            self.index.nprobe = nprobe
            recall = recall_at_k(self._search_rows(queries, k), exact)
            if recall >= target_recall or nprobe >= nlist:
                break
            nprobe = min(nlist, max(nprobe + 1, int(nprobe * 1.5)))
        self.meta.update(nprobe=nprobe, recall=recall, target_recall=target_recall, k=k)
        return recall

    @property
    def recall(self) -> float:
        """Recall@k measured against exact search when the index was calibrated."""
        return float(self.meta["recall"])

    # ----- searching ----------------------------------------------------------------
    def _search_rows(self, queries: np.ndarray, k: int) -> np.ndarray:
        augmented = np.hstack([queries, np.zeros((len(queries), 1), dtype=np.float32)])
        _, rows = self.index.search(np.ascontiguousarray(augmented, dtype=np.float32), k)
        return rows

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(catalogue positions, exact inner-product scores), best first, per query.

        Fewer than k hits (tiny probe sets) are padded with position -1 and score -inf.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        rows = self._search_rows(queries, min(k, len(self.space.positions)))
        valid = rows >= 0
        safe = np.where(valid, rows, 0)
        vectors = np.asarray(self.space.vectors)
        scores = np.einsum("qkd,qd->qk", vectors[safe], queries).astype(np.float32)
        scores[~valid] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")
        positions = np.where(valid, np.asarray(self.space.positions)[safe], -1)
        return np.take_along_axis(positions, order, 1), np.take_along_axis(scores, order, 1)

    # ----- persistence --------------------------------------------------------------
    def save(self, directory: Path, fingerprint: str) -> None:
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / "ivf.faiss"))
        meta = {**self.meta, "max_norm": self.max_norm, "fingerprint": fingerprint}
        (directory / "ann.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path, space: EmbeddingSpace, fingerprint: str) -> ANNIndex | None:
        """The saved index, or None when absent or built for another model."""
        import faiss

        try:
            meta = json.loads((directory / "ann.json").read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if meta.get("fingerprint") != fingerprint or meta.get("items") != len(space.positions):
            return None
        try:
            index = faiss.read_index(str(directory / "ivf.faiss"))
        except RuntimeError as exc:
            raise BundleError(f"cannot read the ANN index in {directory}: {exc}") from None
        index.nprobe = int(meta["nprobe"])
        meta.pop("fingerprint")
        return cls(index, space, float(meta.pop("max_norm")), meta)


def _augment_items(vectors: np.ndarray, norms: np.ndarray, max_norm: float) -> np.ndarray:
    extra = np.sqrt(np.maximum(max_norm**2 - norms.astype(np.float64) ** 2, 0.0))
    return np.hstack([vectors, extra[:, None].astype(np.float32)])
