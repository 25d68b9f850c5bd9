"""`whyrec simulate`: conversational policies against simulated users (EAR/CPR protocol)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from whyrec.commands.checks import check_count
from whyrec.commands.llm_options import NO_LLM_OPTIONS, LLMOptions, with_llm_options
from whyrec.console import count_progress
from whyrec.errors import WhyrecError
from whyrec.jsonout import dumps

console = Console(highlight=False)


@with_llm_options
def simulate(
    bundle: Annotated[
        Path, typer.Option(help="A bundle trained with --holdout, or use --targets.")
    ],
    json_out: Annotated[Path, typer.Option("--json", help="Where to write the results.")],
    targets: Annotated[
        Path | None, typer.Option(help="CSV of user_id,item_id targets (default: the holdout).")
    ] = None,
    episodes: Annotated[int, typer.Option(min=1, help="Number of episodes.")] = 200,
    max_turns: Annotated[int, typer.Option(min=1, help="Turn limit per episode.")] = 15,
    rec_size: Annotated[int, typer.Option(min=1, help="Items per recommendation turn.")] = 10,
    user_mode: Annotated[
        str, typer.Option(help="attribute, language or llm (an LLM talks as the user).")
    ] = "attribute",
    policies: Annotated[
        str, typer.Option(help="Comma-separated: ours, recommend-only, random, max-entropy.")
    ] = "ours,recommend-only,max-entropy,random",
    seed: int = 0,
    llm: Annotated[
        bool, typer.Option("--llm", help="The conversation under test uses the LLM too.")
    ] = False,
    llm_options: LLMOptions = NO_LLM_OPTIONS,
) -> None:
    """Success rate, average turns and hDCG of each policy on the same episodes."""
    import numpy as np
    import pandas as pd

    from whyrec.bundle import Bundle
    from whyrec.commands.checks import check_choice, check_input_file, check_output_file
    from whyrec.conversation.policy import POLICIES
    from whyrec.engine import Engine
    from whyrec.evaluation.conversational import simulate as run
    from whyrec.evaluation.simulated_users import USER_MODES, episodes_from_targets

    check_choice(user_mode, USER_MODES, "--user-mode")
    names = [p.strip() for p in policies.split(",") if p.strip()]
    if not names:
        raise WhyrecError("give at least one policy, e.g. --policies ours,random")
    for name in names:
        check_choice(name, POLICIES, "--policies")
    check_count(episodes, "--episodes", 1_000_000)
    check_count(max_turns, "--max-turns", 1000)
    check_count(rec_size, "--rec-size", 1000)
    check_output_file(json_out, "--json")
    check_input_file(targets, "--targets")
    config = llm_options.config(llm or user_mode == "llm")
    engine = Engine(Bundle.load(bundle))
    if targets is not None:
        try:
            frame = pd.read_csv(targets, dtype=str)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise WhyrecError(f"cannot read targets {targets}: {exc}") from None
    elif engine.bundle.test is not None:
        frame = engine.bundle.test.interactions
    else:
        raise WhyrecError(
            "the bundle holds no test split: train it with --holdout or give --targets"
        )
    chosen = episodes_from_targets(engine, frame, episodes, np.random.default_rng(seed))
    with count_progress(transient=True) as progress:
        tasks = {n: progress.add_task(n, total=len(chosen)) for n in names}
        report = run(
            engine,
            chosen,
            names,
            user_mode=user_mode,
            max_turns=max_turns,
            rec_size=rec_size,
            seed=seed,
            progress=lambda name, step: progress.advance(tasks[name], step),
            llm=config,
            llm_system=llm,
        )
    _write_json(json_out, report)
    _print(report, names, max_turns)


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(dumps(payload, indent=2))
    os.replace(tmp, path)


def _print(report: dict, names: list[str], max_turns: int) -> None:
    per_policy = report.get("policies") or {names[0]: report}
    table = Table(title=f"{report['episodes']} episodes, {report['user_mode']} users")
    for column in ("policy", "SR@5", "SR@10", f"SR@{max_turns}", "AT", "hDCG"):
        table.add_column(column, justify="right" if column != "policy" else "left")
    for name, result in per_policy.items():
        rates = result["success_rate_at"]
        table.add_row(
            name,
            *(f"{rates[k]:.3f}" if k in rates else "—" for k in ("5", "10", str(max_turns))),
            f"{result['average_turns']:.2f}",
            f"{result['hdcg']:.3f}",
        )
    console.print(table)
    calibration = report.get("calibration") or {}
    where = (
        f"fitted on {calibration['validation']['episodes']} simulated training users"
        if calibration.get("validation")
        else "defaults: the bundle was trained without --calibrate"
    )
    fitted = ", ".join(f"{k}={v}" for k, v in report.get("parameters", {}).items())
    console.print(f"policy parameters ({where}): {fitted}")
    if report.get("askable_values"):
        askable = ", ".join(f"{k} ({v})" for k, v in report["askable_values"].items())
        console.print(f"askable values: {askable}")
    if report.get("questions"):
        console.print(f"questions are {report['questions']}")
