"""`whyrec explain-eval`: how faithful the cited evidence is (PN/PS/F_NS vs random, MEP)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from whyrec.commands.options import KcoreOpt, MinRatingOpt, ModelOpt, ParamOpt, SourceOpt

out = Console(highlight=False, soft_wrap=True)


def explain_eval_command(
    data: Annotated[
        str, typer.Option(help="A dataset name or a data directory.")
    ] = "ml-latest-small",
    model: ModelOpt = "ease",
    split_method: Annotated[
        str, typer.Option("--split", help="loo, user-temporal, temporal or random.")
    ] = "loo",
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="List length.")] = 10,
    n_users: Annotated[
        int | None, typer.Option(min=1, help="Evaluate a seeded sample of test users.")
    ] = None,
    evidence_size: Annotated[
        int, typer.Option(min=1, max=5, help="Cited history items per listed item.")
    ] = 3,
    seed: Annotated[int, typer.Option(help="Seed of user sampling and random evidence.")] = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the split.")] = 42,
    param: ParamOpt = None,
    source: SourceOpt = None,
    min_rating: MinRatingOpt = None,
    kcore: KcoreOpt = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the full result to this file.")
    ] = None,
) -> None:
    """Fit a model on a split and measure the faithfulness of its explanations."""
    from whyrec.commands.checks import check_choice, check_k, check_output_file
    from whyrec.commands.evaluate import (
        canonical_model_name,
        check_k_in_catalog,
        parse_model_params,
    )
    from whyrec.commands.options import load_data
    from whyrec.data.splits import SPLIT_METHODS, split
    from whyrec.explain.fidelity import explanation_fidelity
    from whyrec.models import model_class

    name = canonical_model_name(model)
    recommender = model_class(name)(**parse_model_params(param, [name])[name])
    check_choice(split_method, [m for m in SPLIT_METHODS if m != "fixed"], "--split")
    check_k(k)
    check_output_file(json_out, "--json")
    dataset = load_data(data, source, min_rating, kcore)
    parts = split(dataset, split_method, seed=split_seed)
    check_k_in_catalog([k], parts)
    started = time.perf_counter()
    with out.status(f"fitting {recommender!r}"):
        recommender.fit(parts.train)
    with out.status("measuring explanation fidelity"):
        result = explanation_fidelity(
            recommender, parts, k=k, n_users=n_users, seed=seed, evidence_size=evidence_size
        )
    seconds = time.perf_counter() - started
    result["settings"].update(dataset=dataset.name, model=repr(recommender), seconds=seconds)
    if json_out is not None:
        from whyrec.evaluation.report import write_atomic
        from whyrec.jsonout import dumps

        write_atomic(json_out, dumps(result, indent=2))

    settings = result["settings"]
    table = Table(
        title=(
            f"explanation fidelity: {recommender!r} on {dataset.name}, {settings['split']}, "
            f"{settings['users']} users, evidence of {evidence_size} ({settings['attribution']})"
        )
    )
    table.add_column("measure")
    table.add_column("cited evidence", justify="right")
    table.add_column("random evidence", justify="right")
    for name in ("pn", "ps", "fns"):
        key = f"{name}@{k}"
        table.add_row(key, f"{result[key]:.3f}", f"{result[key + '_random']:.3f}")
    table.add_row(
        f"mep@{k} ({settings['mep_neighbours']} neighbours, ≥{settings['mep_threshold']:.0%})",
        f"{result[f'mep@{k}']:.3f}",
        f"{result[f'mep@{k}_random']:.3f} (random items)",
    )
    out.print(table)
    curve = Table(title=f"deletion / insertion: share still in the top {k} (cited vs random)")
    curve.add_column("items")
    curve.add_column("after removing", justify="right")
    curve.add_column("with only", justify="right")
    insertion = {p["added"]: p for p in result["insertion_curve"]}
    for point in result["deletion_curve"]:
        m = point["removed"]
        curve.add_row(
            str(m),
            f"{point[f'in_top{k}']:.3f} vs {point[f'in_top{k}_random']:.3f}",
            f"{insertion[m][f'in_top{k}']:.3f} vs {insertion[m][f'in_top{k}_random']:.3f}",
        )
    out.print(curve)
    out.print(f"[dim]{seconds:.1f}s" + (f"; written to {json_out}" if json_out else "") + "[/dim]")
