"""The HTML page of an interpretation: reconstruction, dead latents, confidence, concepts,
ablation effects. Same style and mechanics as the evaluation report (matplotlib PNGs
embedded as base64, written atomically)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from whyrec.evaluation.report import STYLE, figure_png, write_atomic
from whyrec.interpret.pipeline import Interpretation, ListShift


def _img(alt: str, data: str) -> str:
    return f"<img alt='{alt}' src='data:image/png;base64,{data}'>"


def reconstruction_plot(result: Interpretation) -> str:
    """FVU per epoch, nDCG@k of the model vs its reconstruction, and the probe norms."""
    import matplotlib.pyplot as plt

    figure, (curve, bars, norms) = plt.subplots(1, 3, figsize=(13, 3.6))
    epochs = [h["epoch"] for h in result.sae.history_]
    curve.plot(epochs, [h["fvu"] for h in result.sae.history_], marker=".", label="training FVU")
    curve.axhline(result.fvu_analysis, color="tab:red", linestyle="--", label="analysis FVU")
    curve.set_xlabel("epoch")
    curve.set_ylabel("fraction of variance unexplained")
    curve.set_title("reconstruction")
    curve.legend(fontsize=8)
    k = result.config.k
    if result.ndcg_original is not None:
        values = [result.ndcg_original, result.ndcg_reconstructed or 0.0]
        bars.bar(["original", "reconstructed"], values, color=["tab:blue", "tab:orange"])
        for x, value in enumerate(values):
            bars.annotate(f"{value:.4f}", (x, value), ha="center", va="bottom", fontsize=8)
        bars.set_title(f"nDCG@{k} ({result.ndcg_users} test users)")
    else:
        bars.text(0.5, 0.5, "no held-out data\nin the bundle", ha="center", va="center")
        bars.set_axis_off()
    norms.hist(result.training_norms, bins=50, alpha=0.6, density=True, label="every position")
    norms.hist(result.analysis_norms, bins=50, alpha=0.6, density=True, label="analysis (last)")
    norms.set_xlabel(f"‖{result.probe}‖")
    norms.set_title("probe vector norms")
    norms.legend(fontsize=8)
    figure.tight_layout()
    return figure_png(figure)


def latent_plot(result: Interpretation) -> str:
    """How often latents fire (log scale, dead latents marked) and the confidence histogram."""
    import matplotlib.pyplot as plt

    figure, (firing, confidence) = plt.subplots(1, 2, figsize=(11, 3.6))
    rates = np.sort(result.firing_rates)[::-1]
    firing.plot(np.arange(len(rates)), np.maximum(rates, 1e-6))
    firing.set_yscale("log")
    firing.set_xlabel("latent (by firing rate)")
    firing.set_ylabel("share of training vectors")
    firing.set_title(f"firing rates; dead: {result.dead_fraction:.1%}")
    values = [c.confidence for c in result.dictionary.ranked()]
    confidence.hist(values, bins=np.linspace(0, 1, 21), color="tab:green")
    bar = result.dictionary.config.confident_at
    confidence.axvline(bar, color="grey", linestyle="--", label=f"confident ≥ {bar}")
    confidence.set_xlabel("confidence (harmonic mean of precision and recall)")
    confidence.set_ylabel("latents")
    confidence.set_title(f"{len(result.confident)} of {result.sae.latents} latents confident")
    confidence.legend(fontsize=8)
    figure.tight_layout()
    return figure_png(figure)


def shift_plot(shifts: list[ListShift], title: str) -> str:
    """Concept and unrelated-value shares of the top-k lists before and after, per latent."""
    import matplotlib.pyplot as plt

    figure, (concept, other) = plt.subplots(1, 2, figsize=(12, 3.8), sharey=True)
    x = np.arange(len(shifts))
    names = [str(s.latent) for s in shifts]
    for axis, attribute, label in (
        (concept, "concept", "concept's items"),
        (other, "other", "unrelated attribute values"),
    ):
        axis.bar(
            x - 0.2, [getattr(s, f"{attribute}_share_before") for s in shifts], 0.4, label="before"
        )
        axis.bar(
            x + 0.2, [getattr(s, f"{attribute}_share_after") for s in shifts], 0.4, label="after"
        )
        axis.set_xticks(x, names, rotation=90, fontsize=7)
        axis.set_xlabel("latent")
        axis.set_title(f"share of {label} in top lists")
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure_png(figure)


def _facts(result: Interpretation) -> str:
    k = result.config.k
    ndcg = (
        f"{result.ndcg_original:.4f} → {result.ndcg_reconstructed:.4f}"
        if result.ndcg_original is not None and result.ndcg_reconstructed is not None
        else "not measured"
    )
    facts = {
        "model": f"{result.model} (probe: {result.probe})",
        "latents / k": f"{result.sae.latents} / {result.sae.k}",
        "training vectors": f"{result.training_vectors:,}",
        "analysis sequences": f"{result.analysis_sequences:,} prefixes of training histories",
        "FVU analysis / training": f"{result.fvu_analysis:.4f} / {result.fvu_training:.4f}",
        "dead latents training / analysis": (
            f"{result.dead_fraction:.1%} / {result.dead_fraction_analysis:.1%}"
        ),
        f"nDCG@{k} original → reconstructed": ndcg,
        "nDCG data": result.ndcg_note,
        "build / verify users (disjoint)": (
            f"{len(result.dictionary.build_users)} / {len(result.dictionary.verify_users)}"
        ),
        "confident latents": f"{len(result.confident)} (confidence ≥ "
        f"{result.dictionary.config.confident_at})",
        "seconds": ", ".join(f"{key} {value:.1f}" for key, value in result.seconds.items()),
    }
    rows = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(str(value))}</td></tr>"
        for key, value in facts.items()
    )
    return f"<table class='facts'>{rows}</table>"


def concept_table(result: Interpretation, limit: int = 40) -> str:
    rows = []
    for concept in result.dictionary.ranked()[:limit]:
        examples = "<br>".join(
            html.escape(" ← ".join(example["latest"][:4])) for example in concept.examples[:2]
        )
        items = ", ".join(html.escape(title) for title, _ in concept.enriched_items[:3])
        rows.append(
            f"<tr><td>{concept.latent}</td><td style='text-align:left'>"
            f"{html.escape(concept.label)}</td><td>{concept.confidence:.2f}</td>"
            f"<td>{concept.precision:.2f}</td><td>{concept.recall:.2f}</td>"
            f"<td style='text-align:left'><small>{items}</small></td>"
            f"<td style='text-align:left'><small>{examples}</small></td></tr>"
        )
    return (
        "<table><tr><th>latent</th><th>label</th><th>confidence</th><th>precision</th>"
        "<th>recall</th><th>enriched items</th><th>examples (latest first)</th></tr>"
        f"{''.join(rows)}</table>"
    )


def shift_table(shifts: list[ListShift]) -> str:
    rows = "".join(
        f"<tr><td>{s.latent}</td><td>{s.edit}</td><td style='text-align:left'>"
        f"{html.escape(s.label)}</td><td>{s.sequences}</td>"
        f"<td>{s.concept_share_before:.3f} → {s.concept_share_after:.3f}</td>"
        f"<td>{s.other_share_before:.3f} → {s.other_share_after:.3f}</td>"
        f"<td>{s.items_changed:.2f}</td>"
        f"<td style='text-align:left'><small>{html.escape(', '.join(s.other_values))}"
        "</small></td></tr>"
        for s in shifts
    )
    return (
        "<table><tr><th>latent</th><th>edit</th><th>label</th><th>sequences</th>"
        "<th>concept share</th><th>unrelated share</th><th>items changed of top-k</th>"
        f"<th>unrelated values</th></tr>{rows}</table>"
    )


def example_moves(shifts: list[ListShift]) -> str:
    parts = []
    for shift in shifts:
        if not shift.example:
            continue
        before, after = shift.example["before"], shift.example["after"]
        left = "".join(
            f"<li>{'<s>' if t not in after else ''}{html.escape(t)}"
            f"{'</s>' if t not in after else ''}</li>"
            for t in before
        )
        right = "".join(
            f"<li>{'<b>' if t not in before else ''}{html.escape(t)}"
            f"{'</b>' if t not in before else ''}</li>"
            for t in after
        )
        parts.append(
            f"<h3>{shift.edit} latent {shift.latent}: {html.escape(shift.label)}</h3>"
            f"<p><small>latest watched: {html.escape(' ← '.join(shift.example['latest']))}"
            "</small></p><table><tr><th>before</th><th>after</th></tr>"
            f"<tr><td style='text-align:left'><ol>{left}</ol></td>"
            f"<td style='text-align:left'><ol>{right}</ol></td></tr></table>"
        )
    return "".join(parts)


def render_html(result: Interpretation) -> str:
    import matplotlib

    matplotlib.use("Agg")
    title = f"whyrec interpret: {html.escape(result.model)}"
    sections = [
        f"<h1>{title}</h1>",
        _facts(result),
        "<h2>Reconstruction</h2>",
        _img("reconstruction", reconstruction_plot(result)),
        "<p><small>The autoencoder trains on the probe vector at every position (SASRec) and "
        "is analysed at the last position, the one the scores are read from; both norm "
        "distributions are shown. Reconstructed nDCG replaces the vector by the bare "
        "reconstruction.</small></p>",
        "<h2>Latents and confidence</h2>",
        _img("latents", latent_plot(result)),
        "<p><small>Labels are built on the build users' sequences; precision and recall are "
        "measured on the other users' highest-activation and random sequences, predicting "
        "activity from the label alone.</small></p>",
        "<h2>Top concepts</h2>",
        concept_table(result),
    ]
    if result.ablations:
        sections += [
            "<h2>Ablation of the most confident concepts</h2>",
            _img("ablation", shift_plot(result.ablations, "ablating each latent where it fires")),
            shift_table(result.ablations),
        ]
    if result.steering:
        sections += [
            "<h2>Requested steering</h2>",
            _img("steering", shift_plot(result.steering, "requested edits")),
            shift_table(result.steering),
            example_moves(result.steering),
        ]
    body = "\n".join(sections)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def write_html(result: Interpretation, path: Path) -> None:
    write_atomic(path, render_html(result))
