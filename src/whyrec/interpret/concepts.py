"""The concept dictionary: what each latent stands for, and how sure we are.

Every sequence is described by *features*: the attribute values (genres, tags, decades —
the columns of the item–attribute graph) and the items of its latest items, as a profile
(the share of its context carrying each feature). For each latent, the features of its
top-activating sequences are compared with those of all other sequences by a log-odds
ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008), whose z-score
ranks what is *characteristic* rather than merely frequent (Drama is everywhere). The
most enriched features make the label.

Confidence follows RecSAE, with the samples kept apart: users are split into a *build*
half, whose sequences make the label and the decision threshold, and a *verify* half,
never seen while labelling. On the verify half, the label alone predicts "active / not
active" for the latent's highest-activating sequences and for random sequences; precision
and recall against the real activations combine into confidence = their harmonic mean.

An LLM may write the label or act as the predictor through plain callables (`Labeler`,
`Predictor`); nothing here depends on an LLM package, and a predictor that fails or
answers nonsense counts as "not active" and is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

from whyrec.data.catalog import Catalog
from whyrec.graph.attributes import AttributeGraph
from whyrec.interpret.probe import PrefixSample


class ConceptConfig(BaseModel):
    """How labels are built and verified."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_sequences: int = Field(20, ge=2, description="Top-activating sequences per latent.")
    per_user: int = Field(2, ge=1, description="Most sequences of one user in a top set.")
    random_sequences: int = Field(20, ge=1, description="Random sequences when verifying.")
    min_active: int = Field(5, ge=1, description="Fewest active sequences to label/verify.")
    label_size: int = Field(3, ge=1, description="Most features in a label.")
    min_z: float = Field(3.0, description="Least log-odds z-score of a label feature.")
    min_lift: float = Field(
        2.0, gt=0, description="Least odds ratio (top vs rest) of a label feature."
    )
    prior_size: float = Field(500.0, gt=0, description="Dirichlet prior size (tokens).")
    tokens_per_sequence: float = Field(
        50.0, gt=0, description="Weight of one sequence in the counts, however long it is."
    )
    recency_half_life: float | None = Field(
        None, gt=0, description="Items this far back weigh half (None: all items equal)."
    )
    items_as_features: bool = Field(True, description="Let single items be label features.")
    verify_share: float = Field(0.5, gt=0, lt=1, description="Share of users for verifying.")
    confident_at: float = Field(0.8, ge=0, le=1, description="Confidence of a trusted label.")
    seed: int = Field(0, description="Seed of the user split and the random sequences.")


@dataclass
class FeatureSpace:
    """Attribute values and (optionally) single items as columns over catalog items."""

    incidence: sp.csr_matrix
    names: list[str]
    n_values: int

    @classmethod
    def from_catalog(cls, catalog: Catalog, items_as_features: bool = True) -> FeatureSpace:
        graph = AttributeGraph.from_catalog(catalog)
        names = [f"{f}={v}" for f, v in zip(graph.value_fields, graph.value_labels, strict=True)]
        blocks = [graph.incidence]
        if items_as_features:
            blocks.append(sp.identity(len(catalog), format="csr"))
            names += [catalog.titles[p] for p in range(len(catalog))]
        incidence = sp.hstack(blocks, format="csr").astype(np.float64)
        return cls(incidence, names, graph.n_values)

    @property
    def n_features(self) -> int:
        return self.incidence.shape[1]

    def is_item(self, feature: int) -> bool:
        return feature >= self.n_values

    def items_matching(self, features: Sequence[int]) -> np.ndarray:
        """Boolean mask of catalog items carrying any of the features."""
        if len(features) == 0:
            return np.zeros(self.incidence.shape[0], dtype=bool)
        return np.asarray(self.incidence[:, list(features)].sum(axis=1)).ravel() > 0


def context_weights(
    histories: Sequence[np.ndarray],
    n_items: int,
    context_length: int | None,
    half_life: float | None,
) -> sp.csr_matrix:
    """(sequences × items) weights of each sequence's context, each row summing to 1."""
    rows, cols, data = [], [], []
    for row, history in enumerate(histories):
        context = np.asarray(history[-context_length:] if context_length else history)
        if not len(context):
            continue
        back = np.arange(len(context))[::-1]  # 0 for the latest item
        weights = np.ones(len(context)) if half_life is None else 0.5 ** (back / half_life)
        rows.append(np.full(len(context), row))
        cols.append(context)
        data.append(weights / weights.sum())
    if not rows:
        return sp.csr_matrix((len(histories), n_items))
    matrix = sp.csr_matrix(
        (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(histories), n_items),
    )
    matrix.sum_duplicates()
    return matrix


def log_odds(
    top: np.ndarray, rest: np.ndarray, prior: np.ndarray, prior_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """(log-odds ratio δ, its z-score) of each feature, top group vs rest (rows: groups).

    Monroe et al.'s estimator: counts smoothed by a Dirichlet prior proportional to the
    features' overall frequency, the difference of log-odds divided by its approximate
    standard deviation, so a feature seen 3 times is not "enriched" by chance. z grows
    with counts, so a decade on half the catalog can have a big z with a small effect;
    labels therefore also require δ ≥ log(min_lift), then rank by z.
    """
    alpha = prior_size * prior / max(prior.sum(), 1e-12) + 1e-9  # absent features: z = 0
    n_top = top.sum(axis=1, keepdims=True)
    n_rest = rest.sum(axis=1, keepdims=True)
    top_odds = np.log(top + alpha) - np.log(np.maximum(n_top + prior_size - top - alpha, 1e-9))
    rest_odds = np.log(rest + alpha) - np.log(np.maximum(n_rest + prior_size - rest - alpha, 1e-9))
    variance = 1.0 / (top + alpha) + 1.0 / (rest + alpha)
    delta = top_odds - rest_odds
    return delta, delta / np.sqrt(variance)


@dataclass
class Concept:
    """One latent's label, the evidence behind it, and its verified confidence."""

    latent: int
    label: str
    features: list[tuple[str, float]] = field(default_factory=list)
    """(feature name, z-score) of the label's features, strongest first."""
    enriched_items: list[tuple[str, float]] = field(default_factory=list)
    """(title, z-score) of the items most characteristic of the top sequences."""
    examples: list[dict] = field(default_factory=list)
    feature_ids: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    threshold: float = float("nan")
    active_build: int = 0
    active_verify: int = 0
    precision: float = 0.0
    recall: float = 0.0
    confidence: float = 0.0
    status: str = "ok"
    """ok, rare (too few active sequences to label), unlabelled (nothing enriched),
    unverified (too few active held-out sequences)."""

    def to_dict(self) -> dict:
        return {
            "latent": self.latent,
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "status": self.status,
            "features": [{"feature": n, "z": round(z, 2)} for n, z in self.features],
            "enriched_items": [{"title": t, "z": round(z, 2)} for t, z in self.enriched_items],
            "active_build": self.active_build,
            "active_verify": self.active_verify,
            "examples": self.examples,
        }


Labeler = Callable[[Concept], str]
"""Writes a label from a concept's evidence (an LLM, for instance)."""
Predictor = Callable[[str, list[str]], bool]
"""Given a label and a sequence's latest titles, says whether the latent is active."""


@dataclass
class ConceptDictionary:
    concepts: list[Concept]
    config: ConceptConfig
    build_users: np.ndarray
    verify_users: np.ndarray
    predictor_failures: int = 0

    def confident(self) -> list[Concept]:
        """Labelled, verified concepts at or above the confidence bar, most confident first."""
        chosen = [c for c in self.concepts if c.confidence >= self.config.confident_at]
        return sorted(chosen, key=lambda c: (-c.confidence, c.latent))

    def ranked(self) -> list[Concept]:
        """Every verified concept, most confident first."""
        chosen = [c for c in self.concepts if c.status == "ok"]
        return sorted(chosen, key=lambda c: (-c.confidence, c.latent))

    def __getitem__(self, latent: int) -> Concept:
        return self.concepts[latent]


def split_users(users: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (build, verify) user sets; every prefix of a user falls on one side."""
    distinct = np.unique(users)
    shuffled = np.random.default_rng(seed).permutation(distinct)
    n_verify = max(1, round(share * len(distinct)))
    return np.sort(shuffled[n_verify:]), np.sort(shuffled[:n_verify])


def top_active(
    codes: np.ndarray, users: np.ndarray, limit: int, per_user: int
) -> tuple[np.ndarray, int]:
    """Rows of the highest activations (at most `per_user` per user) and the active count."""
    active = np.flatnonzero(codes > 0)
    order = active[np.argsort(-codes[active], kind="stable")]
    taken: dict[int, int] = {}
    chosen = []
    for row in order:
        user = int(users[row])
        if taken.get(user, 0) < per_user:
            taken[user] = taken.get(user, 0) + 1
            chosen.append(row)
            if len(chosen) == limit:
                break
    return np.asarray(chosen, dtype=np.int64), len(active)


def best_threshold(scores: np.ndarray, truth: np.ndarray) -> float:
    """The score cut-off maximising F1 of "score ≥ cut-off" against the truth."""
    best, best_f1 = float("inf"), -1.0
    for cut in np.unique(scores):
        predicted = scores >= cut
        hits = (predicted & truth).sum()
        f1 = 2 * hits / max(predicted.sum() + truth.sum(), 1)
        if f1 > best_f1:
            best, best_f1 = float(cut), f1
    return best


def precision_recall(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """(precision, recall, harmonic mean); precision is 0 when nothing is predicted."""
    hits = float((predicted & truth).sum())
    precision = hits / predicted.sum() if predicted.sum() else 0.0
    recall = hits / truth.sum() if truth.sum() else 0.0
    combined = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, combined


class DictionaryBuilder:
    """Builds and verifies the concept dictionary from activations on prefix sequences."""

    def __init__(
        self,
        catalog: Catalog,
        config: ConceptConfig | None = None,
        context_length: int | None = None,
        labeler: Labeler | None = None,
        predictor: Predictor | None = None,
    ) -> None:
        self.catalog = catalog
        self.config = config or ConceptConfig()
        self.context_length = context_length
        self.labeler = labeler
        self.predictor = predictor
        self.space = FeatureSpace.from_catalog(catalog, self.config.items_as_features)

    def profiles(self, sample: PrefixSample) -> sp.csr_matrix:
        """(sequences × features) share of each sequence's context carrying each feature."""
        weights = context_weights(
            sample.histories,
            len(self.catalog),
            self.context_length,
            self.config.recency_half_life,
        )
        return (weights @ self.space.incidence).tocsr()

    def build(self, sample: PrefixSample, codes: np.ndarray) -> ConceptDictionary:
        """Label every latent on the build users and verify it on the others."""
        cfg = self.config
        build_users, verify_users = split_users(sample.users, cfg.verify_share, cfg.seed)
        in_build = np.isin(sample.users, build_users)
        build_rows, verify_rows = np.flatnonzero(in_build), np.flatnonzero(~in_build)
        profiles = self.profiles(sample)
        build_profiles, verify_profiles = profiles[build_rows], profiles[verify_rows]
        baseline = np.asarray(build_profiles.mean(axis=0)).ravel()
        rng = np.random.default_rng(cfg.seed)
        concepts = self._label(sample, build_rows, build_profiles, codes[build_rows])
        failures = 0
        for concept in concepts:
            if concept.status != "ok":
                continue
            lift = self._lift_weights(concept, baseline)
            concept.threshold = self._fit_threshold(
                concept, build_profiles, codes[build_rows], sample.users[build_rows], lift, rng
            )
            failures += self._verify(
                concept,
                sample.subset(verify_rows),
                verify_profiles,
                codes[verify_rows],
                lift,
                rng,
            )
        return ConceptDictionary(concepts, cfg, build_users, verify_users, failures)

    # ----- labelling ------------------------------------------------------------------
    def _label(
        self,
        sample: PrefixSample,
        rows: np.ndarray,
        profiles: sp.csr_matrix,
        codes: np.ndarray,
    ) -> list[Concept]:
        cfg = self.config
        users = sample.users[rows]
        tops, concepts = [], []
        for latent in range(codes.shape[1]):
            top, n_active = top_active(codes[:, latent], users, cfg.top_sequences, cfg.per_user)
            concept = Concept(latent=latent, label="", active_build=n_active)
            if n_active < cfg.min_active:
                concept.status = "rare"
                concept.label = "(fires too rarely to label)"
            tops.append(top if concept.status == "ok" else np.zeros(0, dtype=np.int64))
            concepts.append(concept)
        indicator = sp.csr_matrix(
            (
                np.ones(sum(len(t) for t in tops)),
                (np.repeat(np.arange(len(tops)), [len(t) for t in tops]), np.concatenate(tops)),
            ),
            shape=(len(tops), len(rows)),
        )
        counts = profiles * cfg.tokens_per_sequence
        total = np.asarray(counts.sum(axis=0)).ravel()
        for start in range(0, len(concepts), 256):
            block = slice(start, start + 256)
            top_counts = np.asarray((indicator[block] @ counts).todense())
            delta, z = log_odds(top_counts, total[None, :] - top_counts, total, cfg.prior_size)
            for offset in range(len(z)):
                concept = concepts[start + offset]
                if concept.status == "ok":
                    top_rows = rows[tops[start + offset]]
                    self._describe(concept, delta[offset], z[offset], sample, top_rows)
        return concepts

    def _describe(
        self,
        concept: Concept,
        delta: np.ndarray,
        z: np.ndarray,
        sample: PrefixSample,
        top_rows: np.ndarray,
    ) -> None:
        cfg = self.config
        strength = np.where((z >= cfg.min_z) & (delta >= np.log(cfg.min_lift)), z, -np.inf)
        order = np.argsort(-strength, kind="stable")
        chosen = [int(f) for f in order[: cfg.label_size] if np.isfinite(strength[f])]
        item_order = [int(f) for f in order if self.space.is_item(f) and np.isfinite(strength[f])][
            :5
        ]
        concept.enriched_items = [(self.space.names[f], float(z[f])) for f in item_order]
        concept.examples = [self._example(sample, row) for row in top_rows[:3]]
        if not chosen:
            concept.status = "unlabelled"
            concept.label = "(nothing characteristic)"
            return
        concept.feature_ids = chosen
        concept.features = [(self.space.names[f], float(z[f])) for f in chosen]
        concept.weights = [float(z[f]) for f in chosen]
        concept.label = " + ".join(self._readable(f) for f in chosen)
        if self.labeler is not None:
            try:
                written = self.labeler(concept)
                if isinstance(written, str) and written.strip():
                    concept.label = written.strip()[:120]
            except Exception:  # an optional labeller must never break the run
                pass

    def _readable(self, feature: int) -> str:
        name = self.space.names[feature]
        if self.space.is_item(feature):
            return f"“{name}”"
        field_name, _, value = name.partition("=")
        return value if field_name in ("genres", "decade") else f"{field_name}: {value}"

    def _example(self, sample: PrefixSample, row: int) -> dict:
        history = sample.histories[row]
        return {
            "user": int(sample.users[row]),
            "length": len(history),
            "latest": [self.catalog.titles[p] for p in history[-5:][::-1]],
        }

    # ----- verification ---------------------------------------------------------------
    def _lift_weights(self, concept: Concept, baseline: np.ndarray) -> np.ndarray:
        """Per label feature: its z-share divided by its base rate, so scores are lifts."""
        weights = np.asarray(concept.weights, dtype=np.float64)
        weights = weights / weights.sum()
        base = np.maximum(baseline[concept.feature_ids], 1e-9)
        return weights / base

    def _label_scores(
        self, concept: Concept, profiles: sp.csr_matrix, rows: np.ndarray, lift: np.ndarray
    ) -> np.ndarray:
        """How strongly each sequence shows the label: Σ weight × lift of its features."""
        part = profiles[rows][:, concept.feature_ids]
        return np.asarray(part @ lift).ravel()

    def _evaluation_rows(
        self, codes: np.ndarray, users: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, int]:
        """High-activation rows plus random rows (RecSAE's two kinds of test sequences)."""
        cfg = self.config
        top, n_active = top_active(codes, users, cfg.top_sequences, cfg.per_user)
        randoms = rng.choice(len(codes), size=min(cfg.random_sequences, len(codes)), replace=False)
        return np.unique(np.concatenate([top, randoms])), n_active

    def _fit_threshold(self, concept, profiles, codes, users, lift, rng) -> float:
        rows, _ = self._evaluation_rows(codes[:, concept.latent], users, rng)
        scores = self._label_scores(concept, profiles, rows, lift)
        return best_threshold(scores, codes[rows, concept.latent] > 0)

    def _verify(self, concept, sample, profiles, codes, lift, rng) -> int:
        """Fill precision/recall/confidence on held-out sequences; return predictor failures."""
        column = codes[:, concept.latent]
        rows, n_active = self._evaluation_rows(column, sample.users, rng)
        concept.active_verify = n_active
        if n_active < self.config.min_active:
            concept.status = "unverified"
            return 0
        truth = column[rows] > 0
        failures = 0
        if self.predictor is None:
            predicted = self._label_scores(concept, profiles, rows, lift) >= concept.threshold
        else:
            predicted, failures = self._ask_predictor(concept, sample, rows)
        concept.precision, concept.recall, concept.confidence = precision_recall(predicted, truth)
        return failures

    def _ask_predictor(
        self, concept: Concept, sample: PrefixSample, rows: np.ndarray
    ) -> tuple[np.ndarray, int]:
        assert self.predictor is not None
        predicted = np.zeros(len(rows), dtype=bool)
        failures = 0
        for index, row in enumerate(rows):
            history = sample.histories[row]
            context = history[-self.context_length :] if self.context_length else history
            titles = [self.catalog.titles[p] for p in context[-20:]]
            try:
                answer = self.predictor(concept.label, titles)
            except Exception:  # a remote predictor may fail in any way
                answer = None
            if isinstance(answer, bool | np.bool_):
                predicted[index] = bool(answer)
            else:
                failures += 1
        return predicted, failures
