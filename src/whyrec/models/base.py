"""The common base of every recommender.

A model learns from a `Dataset` in `fit` and answers `score(histories, items)`: one row
of scores per history, one column per catalog item (or per requested item). Ranking,
excluding seen items, filtering and explaining are shared code elsewhere, so a model
only has to be good at scoring. Models save as JSON (config) plus `.npy` arrays (state),
never pickle, so a bundle can be inspected and loaded safely.
"""

from __future__ import annotations

import functools
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, ValidationError

from whyrec.data.dataset import Dataset
from whyrec.errors import BundleError, NotFittedError, WhyrecError

if TYPE_CHECKING:
    from whyrec.ranking import CandidateScores
    from whyrec.retrieval import EmbeddingSpace

MODEL_FORMAT = 1
"""Bumped when a model's saved layout changes incompatibly."""

Histories = Sequence[np.ndarray] | sp.csr_matrix
"""Item positions per user in time order, or a users × items matrix of them."""


class ModelConfig(BaseModel):
    """Hyper-parameters of a model; unknown names are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def histories_to_csr(histories: Histories, n_items: int) -> sp.csr_matrix:
    """A binary users × items matrix from a list of position arrays (or pass a matrix through)."""
    if sp.issparse(histories):
        return sp.csr_matrix(histories, dtype=np.float32)
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = (
        np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
        if lengths.sum()
        else np.zeros(0, dtype=np.int64)
    )
    mat = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, indptr), shape=(len(histories), n_items)
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def check_positions(histories: Histories, n_items: int) -> None:
    """Reject item positions outside 0..n_items-1 (numpy would wrap negative ones)."""
    if sp.issparse(histories):
        if histories.shape[1] != n_items:
            raise WhyrecError(f"histories have {histories.shape[1]} columns, not {n_items} items")
        return
    for history in histories:
        history = np.asarray(history)
        if len(history) and (history.min() < 0 or history.max() >= n_items):
            raise WhyrecError(
                f"history positions outside the catalog: they must lie in [0, {n_items})"
            )


NEEDS_FIT = ("score", "contributions", "query_vectors", "state")
"""Methods that mean nothing before `fit` (or `load`): every model's are guarded."""


def _requires_fit(method):
    """`method`, raising `NotFittedError` (one clear line) on a model not yet fitted."""

    takes_histories = method.__name__ in ("score", "query_vectors")

    @functools.wraps(method)
    def checked(self, *args, **kwargs):
        if not self.n_items_:
            raise NotFittedError(
                f"{self.name} is not fitted: call fit(dataset) or load a trained bundle first"
            )
        if takes_histories and args:
            check_positions(args[0], self.n_items_)
        return method(self, *args, **kwargs)

    checked.checks_fit = True
    return checked


class Recommender(ABC):
    """Base class: constructor takes hyper-parameters, `fit` learns, state ends in `_`."""

    name: ClassVar[str]
    Config: ClassVar[type[ModelConfig]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Guard every model's `NEEDS_FIT` methods, so no model can forget to."""
        super().__init_subclass__(**kwargs)
        for method_name in NEEDS_FIT:
            method = cls.__dict__.get(method_name)
            if callable(method) and not getattr(method, "checks_fit", False):
                setattr(cls, method_name, _requires_fit(method))

    def __init__(self, **params: Any) -> None:
        try:
            self.config = self.Config(**params)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise WhyrecError(f"invalid parameters for {self.name}: {problems}") from None
        self.n_items_: int = 0

    @abstractmethod
    def fit(self, dataset: Dataset) -> Self:
        """Learn from the dataset's interactions."""

    @abstractmethod
    def score(self, histories: Histories, items: np.ndarray | None = None) -> np.ndarray:
        """Scores (float32, higher is better, -inf where the model cannot score).

        Shape (len(histories), n_items) or (len(histories), len(items)).
        """

    def contributions(self, history: np.ndarray, items: np.ndarray) -> np.ndarray | None:
        """Exact per-history-item contributions to the scores of `items`.

        `history` holds distinct positions. Shape (len(items), len(history)); each row
        sums to that item's score. Models whose
        score is not a sum over history items return None (explanations then fall back to
        occlusion).
        """
        return None

    def candidate_scores(self, history: np.ndarray) -> CandidateScores | None:
        """`score([history])[0]` as the few items the history reaches and the one score
        every other item shares, for models whose score is a sparse product; the engine
        then ranks without a catalog-sized row. None (the default): rank the full row."""
        return None

    def embedding_space(self) -> EmbeddingSpace | None:
        """Item vectors if score = ⟨query_vectors(history), vector⟩, for approximate top-k.

        Models whose score is not a dot product with fixed item vectors return None and
        are always ranked exactly.
        """
        return None

    def query_vectors(self, histories: Histories) -> np.ndarray:
        """One query vector per history, in the space of `embedding_space()`."""
        raise WhyrecError(f"{self.name} does not score by a dot product with item vectors")

    def run_stats(self) -> dict | None:
        """What the model measured about itself while scoring (e.g. an LLM's calls and
        hallucinations), for evaluation reports; None for models with nothing to add."""
        return None

    # ----- persistence -------------------------------------------------------------
    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """The learned arrays to save."""

    @abstractmethod
    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore learned arrays saved by `state`."""

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for key, array in self.state().items():
            np.save(directory / f"{key}.npy", np.ascontiguousarray(array), allow_pickle=False)
        meta = {
            "model": self.name,
            "format": MODEL_FORMAT,
            "config": self.config.model_dump(),
            "n_items": self.n_items_,
            "arrays": sorted(self.state()),
        }
        (directory / "model.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Recommender:
        """Load any registered model; big arrays are memory-mapped so start-up stays fast."""
        from whyrec.models.registry import model_class

        try:
            meta = json.loads((directory / "model.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise BundleError(f"cannot read {directory / 'model.json'}: {exc}") from None
        if meta.get("format") != MODEL_FORMAT:
            raise BundleError(
                f"model format {meta.get('format')} in {directory} is not the supported "
                f"{MODEL_FORMAT}; retrain with this whyrec version"
            )
        model = model_class(meta["model"])(**meta["config"])
        arrays = {}
        for key in meta["arrays"]:
            try:
                arrays[key] = np.load(directory / f"{key}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise BundleError(f"cannot read {key}.npy in {directory}: {exc}") from None
        model.n_items_ = int(meta["n_items"])
        model.set_state(arrays)
        model.load_parts(directory)
        return model

    def load_parts(self, directory: Path) -> None:
        """Hook for models made of other models (saved in subfolders); most have none."""
        return None

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)
