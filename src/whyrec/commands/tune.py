"""`whyrec tune`: grid search on a validation split carved from the training data only.

The test set is never looked at while choosing: the outer split's train part is split
again with the same method and seed, candidates are ranked on that inner (validation)
split, and the winner is refitted on the whole outer train set and measured on the test
set once, for information. Choosing on test would report an optimistic number that a
new user of the model would never see.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from whyrec.commands.checks import check_k, check_output_file
from whyrec.commands.evaluate import (
    SplitOpt,
    build_model,
    canonical_model_name,
    check_k_in_catalog,
    check_split,
    console,
    load_split,
    parse_model_params,
    progress_bar,
)
from whyrec.commands.options import KcoreOpt, MinRatingOpt, ParamOpt, SourceOpt
from whyrec.errors import WhyrecError


def parse_grid(entries: list[str] | None) -> dict[str, list[str]]:
    """["reg=100,250", "x=1"] → {"reg": ["100", "250"], "x": ["1"]}."""
    grid: dict[str, list[str]] = {}
    for entry in entries or []:
        name, sep, values = entry.partition("=")
        options = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not options:
            raise WhyrecError(f"--grid expects NAME=V1,V2,..., got {entry!r}")
        if name.strip() in grid:
            raise WhyrecError(f"--grid names {name.strip()!r} twice")
        grid[name.strip()] = options
    if not grid:
        raise WhyrecError("give at least one --grid NAME=V1,V2,...")
    return grid


def grid_points(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the grid's values (cartesian product), in the given order."""
    names = list(grid)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*grid.values())]


def tune(
    data: Annotated[
        str, typer.Option(help="A dataset name or a data directory.")
    ] = "ml-latest-small",
    model: Annotated[str, typer.Option(help="The model to tune.")] = "ease",
    grid: Annotated[
        list[str] | None,
        typer.Option(help="NAME=V1,V2,... values to try (repeatable; all combinations)."),
    ] = None,
    split_method: SplitOpt = "loo",
    metric: Annotated[str, typer.Option(help="Selection metric, e.g. ndcg@10.")] = "ndcg@10",
    seed: Annotated[int, typer.Option(help="Seed of the splits and models.")] = 0,
    param: ParamOpt = None,
    test_fraction: Annotated[
        float, typer.Option(help="Held-out share for user-temporal, temporal and random.")
    ] = 0.2,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the search results as JSON here.")
    ] = None,
    source: SourceOpt = None,
    min_rating: MinRatingOpt = None,
    kcore: KcoreOpt = None,
) -> None:
    """Pick hyper-parameters on a validation split carved from train; never on test."""
    from whyrec.data.splits import split
    from whyrec.evaluation.protocol import (
        LOWER_IS_BETTER,
        EvaluationTarget,
        evaluate_model,
        parse_metric,
    )

    name = canonical_model_name(model)
    metric_name, metric_k = parse_metric(metric)
    check_k(metric_k, "--metric's cut-off")
    fixed = parse_model_params(param, [name])[name]
    points = grid_points(parse_grid(grid))
    for point in points:
        overlap = sorted(set(point) & set(fixed))
        if overlap:
            raise WhyrecError(f"{', '.join(overlap)} is both in --grid and --param")
        build_model(name, {**fixed, **point}, seed)  # reject bad names/values before any work
    if split_method == "fixed":
        raise WhyrecError("tune re-splits the training data; use loo, user-temporal, ...")
    check_output_file(json_path, "--json")

    dataset, outer = load_split(
        data, split_method, seed, test_fraction, None, None, source, min_rating, kcore
    )
    check_k_in_catalog([metric_k], outer)
    inner = split(outer.train, split_method, seed=seed, test_fraction=test_fraction)
    check_split(inner)
    validation_target = EvaluationTarget.from_split(inner)
    key = f"{metric_name}@{metric_k}"
    rows = []
    with progress_bar() as progress:
        task = progress.add_task(f"tuning {name}", total=len(points))
        for point in points:
            candidate = build_model(name, {**fixed, **point}, seed)
            result = evaluate_model(
                name, candidate, inner, [metric_k], seed=seed, target=validation_target
            )
            rows.append((point, result.summary[key].mean, result.fit_seconds))
            progress.advance(task)
    lower_better = metric_name in LOWER_IS_BETTER
    worst = float("inf") if lower_better else float("-inf")  # an undefined value never wins
    best_point, best_value, _ = (min if lower_better else max)(
        rows, key=lambda row: worst if row[1] is None or row[1] != row[1] else row[1]
    )

    final = build_model(name, {**fixed, **best_point}, seed)
    test_result = evaluate_model(name, final, outer, [metric_k], seed=seed)
    test_value = test_result.summary[key].mean

    table = Table(title=f"{name} on {dataset.name}: validation carved from train ({split_method})")
    for column in grid_points(parse_grid(grid))[0]:
        table.add_column(column)
    table.add_column(f"validation {key}", justify="right")
    table.add_column("fit s", justify="right")
    for point, value, seconds in rows:
        marker = " *" if point == best_point else ""
        table.add_row(*point.values(), f"{value:.4f}{marker}", f"{seconds:.2f}")
    console.print(table)
    chosen = " ".join(f"{k}={v}" for k, v in best_point.items())
    console.print(f"best: {chosen} ({key} {best_value:.4f} on validation)")
    console.print(f"test {key} of the chosen setting (not used to choose): {test_value:.4f}")
    if json_path is not None:
        from whyrec.evaluation.report import write_atomic
        from whyrec.jsonout import dumps

        payload = {
            "dataset": dataset.name,
            "model": name,
            "metric": key,
            "split": {"method": split_method, "seed": seed, "validation": "carved from train"},
            "fixed": fixed,
            "grid": [{"params": p, "validation": v, "fit_seconds": s} for p, v, s in rows],
            "best": {"params": best_point, "validation": best_value, "test": test_value},
        }
        write_atomic(json_path, dumps(payload, indent=2))
