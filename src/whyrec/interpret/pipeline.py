"""The whole interpretation of a bundle: probe → autoencoder → concepts → ablation.

`interpret_bundle` is what `whyrec interpret` runs and what a notebook calls; its result
is data (`Interpretation`), turned into `summary.json` by `summary` and into HTML by
`whyrec.interpret.report`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from whyrec.bundle import Bundle
from whyrec.console import count_progress
from whyrec.errors import WhyrecError
from whyrec.interpret.concepts import (
    Concept,
    ConceptConfig,
    ConceptDictionary,
    DictionaryBuilder,
    Labeler,
    Predictor,
)
from whyrec.interpret.probe import PrefixSample, ProbePoint, prefix_sample, probe_for
from whyrec.interpret.sae import SAEConfig, SparseAutoencoder, fraction_of_variance_unexplained
from whyrec.interpret.steer import SteeredModel

MIN_VECTORS_PER_LATENT = 8
"""Fewer training vectors per latent than this leaves most latents without data."""


class InterpretConfig(BaseModel):
    """Settings of one interpretation run (defaults: RecSAE's 1,024 latents, k = 8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sae: SAEConfig = Field(default_factory=SAEConfig)
    concepts: ConceptConfig = Field(default_factory=ConceptConfig)
    prefixes_per_user: int = Field(40, ge=1, description="Analysis prefixes per user.")
    ablate_top: int = Field(20, ge=0, description="Most confident latents to ablate.")
    ablation_sequences: int = Field(300, ge=1, description="Most sequences per ablation.")
    k: int = Field(10, ge=1, description="List length for nDCG and list shares.")


@dataclass
class ListShift:
    """How the top-k lists of some sequences move when one latent is edited."""

    latent: int
    label: str
    edit: str
    sequences: int
    concept_share_before: float
    concept_share_after: float
    other_share_before: float
    other_share_after: float
    other_values: list[str]
    items_changed: float
    example: dict | None = None

    def to_dict(self) -> dict:
        return {
            "latent": self.latent,
            "label": self.label,
            "edit": self.edit,
            "sequences": self.sequences,
            "concept_share_before": round(self.concept_share_before, 4),
            "concept_share_after": round(self.concept_share_after, 4),
            "other_share_before": round(self.other_share_before, 4),
            "other_share_after": round(self.other_share_after, 4),
            "other_values": self.other_values,
            "concept_change": _relative(self.concept_share_before, self.concept_share_after),
            "other_change": _relative(self.other_share_before, self.other_share_after),
            "items_changed": round(self.items_changed, 3),
            "example": self.example,
        }


def _relative(before: float, after: float) -> float | None:
    """(after − before) / before: the share's relative move (None when it was 0)."""
    return round((after - before) / before, 4) if before > 0 else None


@dataclass
class Interpretation:
    """Everything one run measured; plots and JSON are made from this."""

    model: str
    probe: str
    config: InterpretConfig
    sae: SparseAutoencoder
    dictionary: ConceptDictionary
    fvu_training: float
    fvu_analysis: float
    dead_fraction: float
    dead_fraction_analysis: float
    training_vectors: int
    analysis_sequences: int
    training_norms: np.ndarray
    analysis_norms: np.ndarray
    firing_rates: np.ndarray
    ndcg_original: float | None
    ndcg_reconstructed: float | None
    ndcg_users: int
    ndcg_note: str
    ablations: list[ListShift] = field(default_factory=list)
    steering: list[ListShift] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def confident(self) -> list[Concept]:
        return self.dictionary.confident()


# ----- the steps --------------------------------------------------------------------------
def check_enough(n_vectors: int, latents: int) -> None:
    if n_vectors < MIN_VECTORS_PER_LATENT * latents:
        most = max(2, n_vectors // MIN_VECTORS_PER_LATENT)
        raise WhyrecError(
            f"only {n_vectors:,} training vectors for {latents:,} latents: a dictionary needs "
            f"at least {MIN_VECTORS_PER_LATENT} per latent; use --latents {most} or fewer, "
            "or more data"
        )


def train_autoencoder(vectors: np.ndarray, config: SAEConfig) -> SparseAutoencoder:
    """Fit the autoencoder with a progress bar showing the running FVU and dead share."""
    with count_progress(with_status=True) as progress:
        task = progress.add_task("sparse autoencoder", total=config.epochs, status="")

        def report(epoch: int, stats: dict[str, float]) -> None:
            status = f"FVU {stats['fvu']:.3f} · dead {stats['dead_fraction']:.1%}"
            progress.update(task, completed=epoch, status=status)

        return SparseAutoencoder(config).fit(vectors, on_epoch=report)


def ndcg_with(model, bundle: Bundle, k: int) -> float:
    """Mean nDCG@k of any scorer on the bundle's held-out test users (full ranking)."""
    from whyrec.data.splits import Split
    from whyrec.evaluation import metrics
    from whyrec.evaluation.protocol import EvaluationTarget, rank_all

    assert bundle.test is not None
    target = EvaluationTarget.from_split(
        Split(bundle.train, bundle.test, str(bundle.info.get("holdout")))
    )
    lists = rank_all(model, target, k)
    hits = metrics.hit_matrix(lists, target.relevant)
    return float(metrics.ndcg(hits, target.n_relevant, k).mean())


def reconstruction_ndcg(
    probe: ProbePoint, sae: SparseAutoencoder, bundle: Bundle, k: int
) -> tuple[float | None, float | None, int, str]:
    """(original, reconstructed, test users, note): the model vs its vector's reconstruction."""
    if bundle.test is None or len(bundle.test) == 0:
        return (
            None,
            None,
            0,
            "the bundle has no held-out test data; train it with "
            "`whyrec train --holdout loo` (or user-temporal) to measure nDCG",
        )
    users = int((bundle.test.matrix.getnnz(axis=1) > 0).sum())
    original = ndcg_with(probe, bundle, k)
    reconstructed = ndcg_with(SteeredModel(probe, sae, reconstruct_only=True), bundle, k)
    holdout = bundle.info.get("holdout") or "held-out"
    return original, reconstructed, users, f"{holdout} test split stored in the bundle"


def rank_vectors(
    probe: ProbePoint, vectors: np.ndarray, histories: Sequence[np.ndarray], k: int
) -> np.ndarray:
    """Top-k lists read from given probe vectors, each history's own items excluded."""
    from whyrec.ranking import unseen_top_k

    out = np.empty((len(histories), k), dtype=np.int64)
    for start in range(0, len(histories), 512):
        chunk = list(histories[start : start + 512])
        scores = probe.scores(vectors[start : start + 512], chunk)
        out[start : start + len(chunk)] = unseen_top_k(scores, chunk, k)
    return out


def _share(lists: np.ndarray, mask: np.ndarray) -> float:
    valid = lists >= 0
    hits = mask[np.where(valid, lists, 0)] & valid
    return float((hits.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)).mean())


def unrelated_values(
    builder: DictionaryBuilder, concept: Concept, before: np.ndarray, count: int = 5
) -> list[int]:
    """The attribute values most common in the lists that the label does not name and
    whose items barely overlap the concept's items (Jaccard < 0.1): what should not move."""
    space = builder.space
    concept_items = space.items_matching(concept.feature_ids)
    attributes = space.incidence[:, : space.n_values].tocsc()
    listed = before[before >= 0]
    frequency = np.asarray(attributes[listed].sum(axis=0)).ravel()
    chosen = []
    for value in np.argsort(-frequency, kind="stable"):
        if frequency[value] == 0 or len(chosen) == count:
            break
        if value in concept.feature_ids:
            continue
        items = attributes[:, value].toarray().ravel() > 0
        overlap = (items & concept_items).sum() / max((items | concept_items).sum(), 1)
        if overlap < 0.1:
            chosen.append(int(value))
    return chosen


def list_shift(
    steered: SteeredModel,
    builder: DictionaryBuilder,
    concept: Concept,
    vectors: np.ndarray,
    histories: list[np.ndarray],
    edit: str,
    k: int,
) -> ListShift:
    """Concept and unrelated-value shares of the top-k lists before and after an edit."""
    probe = steered.probe
    before = rank_vectors(probe, vectors, histories, k)
    after = rank_vectors(probe, steered.edit(vectors), histories, k)
    space = builder.space
    concept_items = space.items_matching(concept.feature_ids)
    others = unrelated_values(builder, concept, before)
    other_masks = [space.items_matching([v]) for v in others]

    def other_share(lists: np.ndarray) -> float:
        return float(np.mean([_share(lists, m) for m in other_masks])) if other_masks else 0.0

    changed = np.mean([len(set(b) - set(a)) for b, a in zip(before, after, strict=True)])
    catalog = builder.catalog
    example = {
        "latest": [catalog.titles[p] for p in histories[0][-5:][::-1]],
        "before": [catalog.titles[p] for p in before[0] if p >= 0],
        "after": [catalog.titles[p] for p in after[0] if p >= 0],
    }
    return ListShift(
        latent=concept.latent,
        label=concept.label,
        edit=edit,
        sequences=len(histories),
        concept_share_before=_share(before, concept_items),
        concept_share_after=_share(after, concept_items),
        other_share_before=other_share(before),
        other_share_after=other_share(after),
        other_values=[space.names[v] for v in others],
        items_changed=float(changed),
        example=example,
    )


def active_rows(codes: np.ndarray, latent: int, limit: int, active: bool) -> np.ndarray:
    """Sequences where the latent fires (strongest first) or does not (evenly spread)."""
    column = codes[:, latent]
    if active:
        rows = np.flatnonzero(column > 0)
        return rows[np.argsort(-column[rows], kind="stable")][:limit]
    rows = np.flatnonzero(column == 0)
    return rows[np.linspace(0, len(rows) - 1, min(limit, len(rows))).astype(int)]


def typical_activation(codes: np.ndarray, latent: int) -> float:
    """The 90th percentile of a latent's non-zero activations: a natural boost size."""
    column = codes[:, latent]
    fired = column[column > 0]
    return float(np.quantile(fired, 0.9)) if len(fired) else 1.0


# ----- the whole run -----------------------------------------------------------------------
def interpret_bundle(
    bundle: Bundle,
    config: InterpretConfig | None = None,
    ablate: Sequence[int] = (),
    boost: Sequence[int] = (),
    labeler: Labeler | None = None,
    predictor: Predictor | None = None,
) -> Interpretation:
    """Probe the bundle's model, train the autoencoder, label, verify and steer."""
    config = config or InterpretConfig()
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    probe = probe_for(bundle.model)
    for latent in [*ablate, *boost]:
        if not 0 <= int(latent) < config.sae.latents:
            raise WhyrecError(
                f"unknown latent {latent}: the autoencoder has {config.sae.latents} latents "
                f"(0–{config.sae.latents - 1})"
            )
    histories = bundle.train.histories()
    sample: PrefixSample = prefix_sample(histories, config.prefixes_per_user)
    if len(sample) < 2 * config.sae.latents:
        raise WhyrecError(
            f"only {len(sample):,} analysis sequences for {config.sae.latents:,} latents: "
            f"use --latents {max(2, len(sample) // 2)} or fewer, or more data"
        )
    analysis = probe.vectors(sample.histories)
    training = (
        probe.training_vectors([h for h in histories if len(h)])
        if probe.every_position
        else analysis
    )
    check_enough(len(training), config.sae.latents)
    seconds["probe"] = time.perf_counter() - clock

    clock = time.perf_counter()
    sae = train_autoencoder(training, config.sae)
    seconds["autoencoder"] = time.perf_counter() - clock

    clock = time.perf_counter()
    training_codes = sae.encode(training)
    codes = sae.encode(analysis)
    fvu_training = fraction_of_variance_unexplained(training, sae.decode(training_codes))
    fvu_analysis = fraction_of_variance_unexplained(analysis, sae.decode(codes))
    firing = (training_codes > 0).mean(axis=0)
    del training_codes
    original, reconstructed, n_users, note = reconstruction_ndcg(probe, sae, bundle, config.k)
    seconds["reconstruction"] = time.perf_counter() - clock

    clock = time.perf_counter()
    builder = DictionaryBuilder(
        bundle.catalog, config.concepts, probe.context_length, labeler, predictor
    )
    dictionary = builder.build(sample, codes)
    seconds["concepts"] = time.perf_counter() - clock

    clock = time.perf_counter()
    shifts = []
    for concept in dictionary.confident()[: config.ablate_top]:
        shifts.append(_ablation(probe, sae, builder, concept, codes, analysis, sample, config))
    steering = [
        _ablation(probe, sae, builder, dictionary[int(latent)], codes, analysis, sample, config)
        for latent in ablate
    ]
    for latent in boost:
        steering.append(
            _boost(probe, sae, builder, dictionary[int(latent)], codes, analysis, sample, config)
        )
    seconds["ablation"] = time.perf_counter() - clock
    return Interpretation(
        model=probe.model_name,
        probe=probe.description,
        config=config,
        sae=sae,
        dictionary=dictionary,
        fvu_training=fvu_training,
        fvu_analysis=fvu_analysis,
        dead_fraction=float((firing == 0).mean()),
        dead_fraction_analysis=float(((codes > 0).sum(axis=0) == 0).mean()),
        training_vectors=len(training),
        analysis_sequences=len(sample),
        training_norms=np.linalg.norm(training, axis=1),
        analysis_norms=np.linalg.norm(analysis, axis=1),
        firing_rates=firing,
        ndcg_original=original,
        ndcg_reconstructed=reconstructed,
        ndcg_users=n_users,
        ndcg_note=note,
        ablations=shifts,
        steering=steering,
        seconds=seconds,
    )


def _ablation(probe, sae, builder, concept, codes, analysis, sample, config) -> ListShift:
    rows = active_rows(codes, concept.latent, config.ablation_sequences, active=True)
    if len(rows) == 0:
        raise WhyrecError(f"latent {concept.latent} never fires on the analysis sequences")
    steered = SteeredModel(probe, sae).ablate(concept.latent)
    histories = [sample.histories[r] for r in rows]
    return list_shift(steered, builder, concept, analysis[rows], histories, "ablate", config.k)


def _boost(probe, sae, builder, concept, codes, analysis, sample, config) -> ListShift:
    rows = active_rows(codes, concept.latent, config.ablation_sequences, active=False)
    if len(rows) == 0:
        raise WhyrecError(f"latent {concept.latent} fires on every sequence: nothing to boost")
    amount = typical_activation(codes, concept.latent)
    steered = SteeredModel(probe, sae).boost(concept.latent, amount)
    histories = [sample.histories[r] for r in rows]
    return list_shift(steered, builder, concept, analysis[rows], histories, "boost", config.k)


def summary(result: Interpretation) -> dict:
    """The summary.json contents (the keys the issue asks for, and a few more)."""
    k = result.config.k

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 5)

    confident = result.confident
    shifts = result.ablations
    return {
        "model": result.model,
        "probe": result.probe,
        "latents": result.sae.latents,
        "k": result.sae.k,
        "fvu": round(result.fvu_analysis, 5),
        "fvu_training": round(result.fvu_training, 5),
        "dead_fraction": round(result.dead_fraction, 5),
        "dead_fraction_analysis": round(result.dead_fraction_analysis, 5),
        "training_vectors": result.training_vectors,
        "analysis_sequences": result.analysis_sequences,
        f"ndcg@{k}_original": rounded(result.ndcg_original),
        f"ndcg@{k}_reconstructed": rounded(result.ndcg_reconstructed),
        "ndcg_users": result.ndcg_users,
        "ndcg_note": result.ndcg_note,
        "confident_at": result.dictionary.config.confident_at,
        "confident_latents": len(confident),
        "labelled_latents": len(result.dictionary.ranked()),
        "build_users": len(result.dictionary.build_users),
        "verify_users": len(result.dictionary.verify_users),
        "predictor_failures": result.dictionary.predictor_failures,
        "concepts": [c.to_dict() for c in result.dictionary.ranked()],
        "ablation": [s.to_dict() for s in shifts],
        "ablation_mean": _mean_shift(shifts),
        "steering": [s.to_dict() for s in result.steering],
        "seconds": {key: round(value, 2) for key, value in result.seconds.items()},
    }


def _mean_shift(shifts: list[ListShift]) -> dict | None:
    if not shifts:
        return None
    keys = (
        "concept_share_before",
        "concept_share_after",
        "other_share_before",
        "other_share_after",
    )
    means = {key: round(float(np.mean([getattr(s, key) for s in shifts])), 4) for key in keys}
    for key in ("concept_change", "other_change"):
        moves = [s.to_dict()[key] for s in shifts if s.to_dict()[key] is not None]
        means[key] = round(float(np.mean(moves)), 4) if moves else None
        means[f"{key}_abs"] = round(float(np.mean(np.abs(moves))), 4) if moves else None
    return means
