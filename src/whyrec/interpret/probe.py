"""Probe points: the vector just before a model's scoring layer, read and written back.

A sparse autoencoder can only explain a model through one vector per history from which
the scores are read by a fixed product with item vectors: SASRec's last hidden state, an
MF model's user factors, the text model's user vector; or by a fixed decoder: the
generative model's encoder state, from which its index decoder scores every item. A probe
reads that vector (`vectors`), and scores items from a *given* vector through the model's
own scoring path (`scores`), so a steered vector is ranked exactly as the model ranks its own.

Histories for analysis are time-ordered prefixes of the users' training histories: a
prefix is what the model saw at that moment, so each user contributes many sequences
(610 users alone are too few for a dictionary of 1,024 latents).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from whyrec.errors import WhyrecError
from whyrec.models.base import Recommender

PROBED_MODELS = ("sasrec", "sasrec-text", "ials", "bpr", "relmf", "text", "generative")
"""Registered models that expose a vector before their scoring layer."""


class NoProbePointError(WhyrecError):
    """The model scores without a single user/sequence vector to probe."""


@dataclass
class PrefixSample:
    """Time-ordered prefixes of users' histories: `histories[i]` is user `users[i]`'s first
    `ends[i]` items. Prefixes of one user share its row, so splits can keep users apart."""

    users: np.ndarray
    ends: np.ndarray
    histories: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.histories)

    def subset(self, rows: np.ndarray) -> PrefixSample:
        rows = np.asarray(rows, dtype=np.int64)
        return PrefixSample(self.users[rows], self.ends[rows], [self.histories[i] for i in rows])


def prefix_sample(
    histories: Sequence[np.ndarray], per_user: int = 40, min_length: int = 3
) -> PrefixSample:
    """Up to `per_user` prefixes per user, evenly spaced in length, always the full history.

    Even spacing (not random) keeps the sample reproducible and covers early and late
    tastes alike; capping per user keeps heavy raters from dominating the dictionary.
    """
    users, ends, prefixes = [], [], []
    for user, history in enumerate(histories):
        if len(history) < min_length:
            continue
        lengths = np.unique(np.linspace(min_length, len(history), per_user).round().astype(int))
        for end in lengths:
            users.append(user)
            ends.append(end)
            prefixes.append(history[:end])
    return PrefixSample(np.asarray(users, np.int64), np.asarray(ends, np.int64), prefixes)


class ProbePoint(ABC):
    """Where a model's user/sequence vector is read and written back."""

    description: str
    context_length: int | None = None
    """How many latest history items the vector depends on (None: the whole history)."""

    def __init__(self, model: Recommender) -> None:
        self.model = model

    @property
    def model_name(self) -> str:
        return self.model.name

    @abstractmethod
    def vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """The probe vector of each history (n, dim) — what the scores are read from."""

    every_position = False
    """True when the model makes a vector at every position of a history (SASRec): the
    autoencoder then trains on those; otherwise on the analysis prefixes' vectors."""

    def training_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Vectors at every position of the full histories (only if `every_position`)."""
        raise NotImplementedError

    @abstractmethod
    def scores(self, vectors: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        """Scores of every item read from given vectors, as the model's `score` would."""

    def score(self, histories: Sequence[np.ndarray], items: np.ndarray | None = None):
        """The model's own scores through the probe (equal to `model.score`)."""
        scores = self.scores(self.vectors(histories), histories)
        return scores if items is None else scores[:, np.asarray(items)]


def _empty(histories: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([len(h) == 0 for h in histories], dtype=bool)


class SequenceProbe(ProbePoint):
    """SASRec: the last hidden state (after the final layer norm), dotted with item vectors.

    The autoencoder trains on the hidden state at *every* position (the distribution the
    network was trained on); concepts and steering use the last position only, which is
    the one that scores. Both distributions are reported.
    """

    description = "last hidden state"
    every_position = True

    def __init__(self, model: Recommender) -> None:
        super().__init__(model)
        self.context_length = int(model.config.max_len)

    def vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.hidden(list(histories))

    def training_vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.hidden_every_position(list(histories))

    def scores(self, vectors: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.scores_from_hidden(vectors, _empty(histories))


class FactorProbe(ProbePoint):
    """iALS, BPR, Rel-MF: the folded-in user factor, dotted with item factors (+ bias)."""

    description = "user factors"

    def vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self.model.user_factors(list(histories)), dtype=np.float32)

    def scores(self, vectors: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.scores_from_factors(vectors)


class TextProbe(ProbePoint):
    """The text model: the unit user vector (mean of mapped history items), cosine scores."""

    description = "user vector"

    def vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.user_vectors(list(histories))

    def scores(self, vectors: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.scores_from_user_vectors(vectors, _empty(histories))


class GenerativeProbe(ProbePoint):
    """The generative model: the encoder's last state, from which the constrained decoder
    writes the next item's index. Scores read from a vector are the exact
    log-probabilities of every item's index (the decoder, not a dot product), so a steered
    state ranks items as the model would generate them."""

    description = "encoder state before the index decoder"

    def __init__(self, model: Recommender) -> None:
        super().__init__(model)
        self.context_length = int(model.config.max_len)

    def vectors(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.hidden(list(histories))

    def scores(self, vectors: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.scores_from_hidden(vectors, _empty(histories))


def probe_for(model: Recommender) -> ProbePoint:
    """The probe point of a model, or a clear error naming the models that have one."""
    from whyrec.models.factors import FactorModel
    from whyrec.models.generative import Generative
    from whyrec.models.sasrec import SASRec
    from whyrec.models.text import TextRecommender

    if isinstance(model, SASRec):
        return SequenceProbe(model)
    if isinstance(model, TextRecommender):
        return TextProbe(model)
    if isinstance(model, FactorModel):
        return FactorProbe(model)
    if isinstance(model, Generative):
        return GenerativeProbe(model)
    raise NoProbePointError(
        f"model {model.name!r} has no probe point (no single vector before its scoring "
        f"layer); models that have one: {', '.join(PROBED_MODELS)}"
    )
