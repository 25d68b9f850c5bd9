"""`whyrec interpret`: sparse-autoencoder concepts of a bundle's model, and steering.

A thin shell over `whyrec.interpret`: it loads the bundle, runs `interpret_bundle`, writes
the HTML report and `summary.json` next to it, and prints the headline figures (and, for
--ablate/--boost, how the recommendations moved).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from whyrec.commands.checks import check_count, check_output_dir, check_output_file
from whyrec.commands.options import BundleOpt
from whyrec.errors import WhyrecError

console = Console(highlight=False, soft_wrap=True)

MAX_LATENTS = 1 << 16
"""A dictionary this large already needs gigabytes of weights for a wide model."""
MAX_EPOCHS = 100_000


def interpret_command(
    bundle: BundleOpt,
    out: Annotated[Path, typer.Option(help="HTML report to write (summary.json goes next to it).")],
    latents: Annotated[int, typer.Option(min=2, help="Autoencoder dictionary size.")] = 1024,
    k: Annotated[int, typer.Option("--k", min=1, help="Active latents per vector (TopK).")] = 8,
    epochs: Annotated[int, typer.Option(min=1, help="Autoencoder training epochs.")] = 40,
    ablate: Annotated[
        list[int] | None, typer.Option(help="Ablate this latent and show the moves (repeatable).")
    ] = None,
    boost: Annotated[
        list[int] | None, typer.Option(help="Boost this latent and show the moves (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the autoencoder and the user split.")] = 0,
    save_sae: Annotated[
        Path | None, typer.Option(help="Also save the trained autoencoder in this folder.")
    ] = None,
) -> None:
    """Find what a model has learned (RecSAE): concepts, their confidence, and steering."""
    from whyrec.bundle import Bundle
    from whyrec.evaluation.report import write_atomic
    from whyrec.interpret.concepts import ConceptConfig
    from whyrec.interpret.pipeline import InterpretConfig, interpret_bundle, summary
    from whyrec.interpret.probe import probe_for
    from whyrec.interpret.report import write_html
    from whyrec.interpret.sae import SAEConfig
    from whyrec.jsonout import dumps

    check_count(latents, "--latents", MAX_LATENTS)
    check_count(epochs, "--epochs", MAX_EPOCHS)
    if k > latents:
        raise WhyrecError(f"--k ({k}) cannot exceed --latents ({latents})")
    if out.suffix.lower() not in (".html", ".htm"):
        raise WhyrecError(f"--out should be an .html file, got {out}")
    check_output_file(out, "--out")
    if save_sae is not None:
        check_output_dir(save_sae, "--save-sae")
    loaded = Bundle.load(bundle)
    probe_for(loaded.model)  # fail fast, before any work, if the model has no probe point
    config = InterpretConfig(
        sae=SAEConfig(latents=latents, k=k, epochs=epochs, seed=seed),
        concepts=ConceptConfig(seed=seed),
    )
    result = interpret_bundle(loaded, config, ablate=ablate or (), boost=boost or ())
    data = summary(result)
    write_html(result, out)
    write_atomic(out.with_name("summary.json"), dumps(data, indent=2))
    if save_sae is not None:
        result.sae.save(save_sae)
    _print_summary(data)
    for shift in result.steering:
        _print_moves(shift)
    console.print(f"report → {out}; summary → {out.with_name('summary.json')}")


def _print_summary(data: dict) -> None:
    table = Table(title=f"interpretation of {data['model']} ({data['probe']})", show_header=False)
    rows = {
        "latents / k": f"{data['latents']} / {data['k']}",
        "FVU (analysis / training)": f"{data['fvu']:.4f} / {data['fvu_training']:.4f}",
        "dead latents": f"{data['dead_fraction']:.1%}",
        "nDCG@10 original → reconstructed": (
            f"{data['ndcg@10_original']:.4f} → {data['ndcg@10_reconstructed']:.4f}"
            if data["ndcg@10_original"] is not None
            else data["ndcg_note"]
        ),
        "confident latents": f"{data['confident_latents']} (≥ {data['confident_at']})",
    }
    mean = data.get("ablation_mean")
    if mean:
        rows["ablation: concept share"] = (
            f"{mean['concept_share_before']:.3f} → {mean['concept_share_after']:.3f}"
        )
        rows["ablation: unrelated share"] = (
            f"{mean['other_share_before']:.3f} → {mean['other_share_after']:.3f}"
        )
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)


def _print_moves(shift) -> None:
    console.print(
        f"[bold]{shift.edit} latent {shift.latent}[/bold] ({shift.label}): concept share "
        f"{shift.concept_share_before:.3f} → {shift.concept_share_after:.3f}, unrelated "
        f"{shift.other_share_before:.3f} → {shift.other_share_after:.3f} over "
        f"{shift.sequences} sequences"
    )
    if shift.example:
        table = Table(title="example: " + " ← ".join(shift.example["latest"][:3]))
        table.add_column("before")
        table.add_column("after")
        before, after = shift.example["before"], shift.example["after"]
        for index in range(max(len(before), len(after))):
            left = before[index] if index < len(before) else ""
            right = after[index] if index < len(after) else ""
            table.add_row(
                f"[strike]{left}[/strike]" if left and left not in after else left,
                f"[bold]{right}[/bold]" if right and right not in before else right,
            )
        console.print(table)
