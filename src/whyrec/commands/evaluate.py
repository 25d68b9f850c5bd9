"""`whyrec evaluate`: several models, one split, one protocol, honest numbers.

Everything the user typed is checked before any data is loaded or model fitted (model
names, parameters, k values, output paths), so a typo costs a second, not a fit. Output
files are written only once every model is evaluated, each through a temporary file, so
a failure never leaves a partial JSON or HTML behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from whyrec.commands.checks import (
    check_choice,
    check_fraction,
    check_input_file,
    check_k,
    check_output_file,
)
from whyrec.commands.llm_options import NO_LLM_OPTIONS, LLMOptions, with_llm_options
from whyrec.commands.options import KcoreOpt, MinRatingOpt, SourceOpt, check_data_options
from whyrec.console import count_progress
from whyrec.errors import WhyrecError
from whyrec.jsonout import strict

if TYPE_CHECKING:  # the heavy modules load when a command runs, not when the CLI starts
    from whyrec.data.dataset import Dataset
    from whyrec.data.splits import Split
    from whyrec.evaluation.protocol import EvaluationReport
    from whyrec.models import Recommender

console = Console(highlight=False)

SPLIT_CHOICES = "loo, user-temporal, temporal, random or fixed"
MODEL_CHOICES = (
    "pop(ularity), itemknn, ease, ials, bpr, relmf, text, sasrec, sasrec-text, hybrid, "
    "llm, llm-rerank"
)
LLM_MODELS = ("llm", "llm-rerank")
"""Models that ask the LLM server (configured like `whyrec chat --llm`)."""

TABLE_METRICS = ("ndcg", "recall", "precision", "map", "mrr", "hr", "coverage", "arp", "aplt")
"""Columns of the printed table; the JSON and HTML report carry every metric."""

MIN_TEST_USERS = 2
"""Fewer test users than this give no confidence interval or test: refuse instead."""

SplitOpt = Annotated[str, typer.Option("--split", help=f"One of {SPLIT_CHOICES}.")]


# ----- parsing shared with `whyrec tune` ---------------------------------------------------
def _model_class(name: str) -> type[Recommender]:
    """A registered model, or one of the LLM models (evaluated only: they ask a server
    when scoring, so they are not in the registry of models that train and save)."""
    from whyrec.models import model_class

    if name.strip().lower() in LLM_MODELS:
        from whyrec.llm.recommender import LLMRecommender, LLMReranker

        return {"llm": LLMRecommender, "llm-rerank": LLMReranker}[name.strip().lower()]
    return model_class(name)


def canonical_model_name(name: str) -> str:
    """Registered name for a model name or alias ("pop" → "popularity")."""
    return _model_class(name).name


def parse_model_list(text: str) -> list[str]:
    """ "pop,ease" → ["popularity", "ease"]; unknown or repeated names are user errors."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise WhyrecError("give at least one model, e.g. --models pop,ease")
    canonical = [canonical_model_name(name) for name in names]
    repeated = sorted({n for n in canonical if canonical.count(n) > 1})
    if repeated:
        raise WhyrecError(f"model listed twice: {', '.join(repeated)}")
    return canonical


def parse_model_params(pairs: list[str] | None, models: list[str]) -> dict[str, dict[str, str]]:
    """["ease.reg=500"] → {"ease": {"reg": "500"}}: one syntax in every command.

    `MODEL.NAME=VALUE` names a model being run; plain `NAME=VALUE` is accepted when only
    one model is (train, tune, explain-eval, or evaluate with one model)."""
    parsed: dict[str, dict[str, str]] = {name: {} for name in models}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        model, dot, param = key.strip().partition(".")
        if not dot:
            model, param = "", model
        if not dot and len(models) == 1:
            model = models[0]
        if not sep or not model or not param.strip():
            raise WhyrecError(
                f"--param expects MODEL.NAME=VALUE (e.g. ease.reg=500; the MODEL. prefix may "
                f"be left out when one model runs), got {pair!r}"
            )
        name = canonical_model_name(model)
        if name not in parsed:
            raise WhyrecError(f"--param {pair!r} names {name}, which is not being run")
        parsed[name][param.strip()] = value.strip()
    return parsed


def build_model(name: str, params: dict[str, object], seed: int) -> Recommender:
    """A model with the given parameters; the run's seed fills its `seed` unless given."""
    cls = _model_class(name)
    params = dict(params)
    if "seed" in cls.Config.model_fields and "seed" not in params:
        params["seed"] = seed
    return cls(**params)


def load_split(
    data: str,
    method: str,
    seed: int,
    test_fraction: float,
    train_file: Path | None,
    test_file: Path | None,
    source: Path | None,
    min_rating: float | None,
    kcore: int | None,
) -> tuple[Dataset, Split]:
    """Load, filter and split the data, refusing splits too small to evaluate."""
    from whyrec.data.loaders import load_dataset
    from whyrec.data.splits import SPLIT_METHODS, split

    check_choice(method, SPLIT_METHODS, "--split")
    check_fraction(test_fraction, "--test-fraction")
    check_data_options(min_rating, kcore, "error")
    dataset = load_dataset(data, source=source, min_rating=min_rating, kcore=kcore)
    result = split(
        dataset,
        method,
        seed=seed,
        test_fraction=test_fraction,
        train_file=train_file,
        test_file=test_file,
    )
    check_split(result)
    return dataset, result


def check_k_in_catalog(ks: list[int], result: Split) -> None:
    """A cut-off longer than the catalog ranks nothing more, only costs memory: refuse it."""
    items = result.train.n_items
    if max(ks) > items:
        raise WhyrecError(f"--k {max(ks):,} is longer than the catalog ({items:,} items)")


def check_split(result: Split) -> None:
    """Refuse a split that leaves too few test users or items for meaningful numbers."""
    from whyrec.evaluation.protocol import EvaluationError

    test_users = int((result.test.matrix.getnnz(axis=1) > 0).sum())
    if test_users < MIN_TEST_USERS:
        raise EvaluationError(
            f"the {result.method} split leaves {test_users} test user(s); "
            f"at least {MIN_TEST_USERS} are needed (is the dataset too small?)"
        )
    trained_items = int((result.train.matrix.getnnz(axis=0) > 0).sum())
    if trained_items < 2:
        raise EvaluationError("the training data covers fewer than 2 items; nothing to rank")


# ----- printing ------------------------------------------------------------------------------
def _cell(report: EvaluationReport, model_index: int, key: str) -> str:
    """Mean over a second line with the 95% CI half-width (narrow enough for 80 columns)."""
    summary = report.results[model_index].summary[key]
    if summary.mean is None or summary.mean != summary.mean:
        return "—"
    low, high = summary.ci95
    digits = 4 if abs(summary.mean) < 10 else 1
    value = f"{summary.mean:.{digits}f}"
    if low is None or high is None:
        return value
    return f"{value}\n±{(high - low) / 2:.{digits}f}"


def print_report(report: EvaluationReport) -> None:
    """One table per k: metrics down, models across, then fit and scoring seconds."""
    split_info = report.split
    console.print(
        f"[bold]{report.dataset}[/bold] · split {split_info['method']} · "
        f"{split_info['test_users']:,} test users · {split_info['items']:,} items · "
        "full ranking, training items excluded · mean and ±95% CI half-width"
    )
    for k in report.ks:
        table = Table(title=f"k = {k}")
        table.add_column("metric")
        for result in report.results:
            table.add_column(result.name, justify="right")
        for name in TABLE_METRICS:
            key = f"{name}@{k}"
            table.add_row(key, *[_cell(report, i, key) for i in range(len(report.results))])
        table.add_row("fit s", *[f"{r.fit_seconds:.2f}" for r in report.results])
        table.add_row("score s", *[f"{r.score_seconds:.2f}" for r in report.results])
        console.print(table)
    for result in report.results:
        asked = (result.model.run_stats() or {}).get("llm")
        if asked:
            console.print(
                f"{result.name}: {asked['users']} users asked, parsed {asked['parsed']:.0%}, "
                f"hallucinated {asked['hallucinated']:.0%} and repeated {asked['repeated']:.0%} "
                f"of {asked['titles']} answers, {asked['calls']} calls, {asked['tokens']:,} "
                f"tokens, {asked['seconds']:.1f} s"
            )
    print_rare_items(report)


def print_rare_items(report: EvaluationReport) -> None:
    """The rare-item slice: can a model reach items the training data barely knows?"""
    rare = report.rare_items
    if not rare or not rare["models"]:
        return
    table = Table(
        title=f"rare items (< {rare['below']} training interactions): "
        f"{rare['test_users']:,} users, {rare['test_interactions']:,} held-out items"
    )
    table.add_column("metric")
    names = list(rare["models"])
    for name in names:
        table.add_column(name, justify="right")
    for key in next(iter(rare["models"].values()))["metrics"]:
        cells = []
        for name in names:
            value = rare["models"][name]["metrics"][key]
            low, high = value["ci95"]
            half = "" if low is None or high is None else f"\n±{(high - low) / 2:.4f}"
            cells.append(f"{value['mean']:.4f}{half}")
        table.add_row(key, *cells)
    console.print(table)


def progress_bar() -> Progress:
    """The CLI's progress bar, cleared when done (the results table follows)."""
    return count_progress(transient=True)


def _three(value: float) -> str:
    return "—" if value != value else f"{value:.3f}"


def measure_explanations(
    models: dict[str, Recommender], result: Split, k: int, n_users: int | None, seed: int
) -> dict[str, dict]:
    """Faithfulness of every fitted model's cited evidence, printed next to random evidence."""
    from whyrec.explain.fidelity import explanation_fidelity

    measured = {}
    table = Table(title=f"explanation faithfulness at k={k} (cited vs random evidence)")
    for column in ("model", "PN", "PN random", "PS", "PS random", "F_NS", "MEP", "attribution"):
        table.add_column(column, justify="left" if column in ("model", "attribution") else "right")
    with progress_bar() as progress:
        task = progress.add_task("explanations", total=len(models))
        for name, model in models.items():
            progress.update(task, description=f"explaining {name}")
            fidelity = explanation_fidelity(model, result, k=k, n_users=n_users, seed=seed)
            measured[name] = strict(fidelity)
            progress.advance(task)
            table.add_row(
                name,
                *(
                    _three(fidelity[key])
                    for key in (
                        f"pn@{k}",
                        f"pn@{k}_random",
                        f"ps@{k}",
                        f"ps@{k}_random",
                        f"fns@{k}",
                        f"mep@{k}",
                    )
                ),
                fidelity["settings"]["attribution"],
            )
    console.print(table)
    return measured


# ----- the command --------------------------------------------------------------------------
@with_llm_options
def evaluate(
    data: Annotated[
        str, typer.Option(help="A dataset name or a data directory.")
    ] = "ml-latest-small",
    models: Annotated[
        str,
        typer.Option(help=f"Comma-separated models: {MODEL_CHOICES}."),
    ] = "pop,itemknn,ease,ials,bpr",
    split_method: SplitOpt = "loo",
    k: Annotated[str, typer.Option("--k", "-k", help="Cut-offs, comma-separated.")] = "10,20",
    seed: Annotated[int, typer.Option(help="Seed of the split, models and bootstrap.")] = 0,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the results as JSON here.")
    ] = None,
    report_path: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report here.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(help="Hyper-parameter MODEL.NAME=VALUE, e.g. ease.reg=500 (repeatable)."),
    ] = None,
    test_fraction: Annotated[
        float, typer.Option(help="Held-out share for user-temporal, temporal and random.")
    ] = 0.2,
    train_file: Annotated[Path | None, typer.Option(help="Train file for --split fixed.")] = None,
    test_file: Annotated[Path | None, typer.Option(help="Test file for --split fixed.")] = None,
    source: SourceOpt = None,
    min_rating: MinRatingOpt = None,
    kcore: KcoreOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Users scored at once.")] = 512,
    explanations: Annotated[
        bool,
        typer.Option(
            "--explanations",
            help="Also measure explanation faithfulness (PN, PS, MEP, deletion/insertion).",
        ),
    ] = False,
    explain_users: Annotated[
        int | None, typer.Option(min=1, help="Test users sampled for --explanations (all).")
    ] = None,
    rare_below: Annotated[
        int,
        typer.Option(
            min=1,
            help="Also report accuracy on held-out items with fewer training interactions "
            "than this (the cold-ish slice).",
        ),
    ] = 5,
    max_users: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Evaluate every model on this many test users, sampled with the seed "
            "(LLM models make one call per user).",
        ),
    ] = None,
    llm_options: LLMOptions = NO_LLM_OPTIONS,
) -> None:
    """Fit models on a split and rank every test user against the full catalog."""
    from whyrec.evaluation.protocol import evaluate_models, parse_ks

    names = parse_model_list(models)
    ks = [check_k(value) for value in parse_ks(k)]
    params = parse_model_params(param, names)
    instances = {name: build_model(name, params[name], seed) for name in names}
    check_output_file(json_path, "--json")
    check_output_file(report_path, "--report")
    check_input_file(train_file, "--train-file")
    check_input_file(test_file, "--test-file")
    asking = [name for name in names if name in LLM_MODELS]
    if asking:
        config = llm_options.config(True)
        for name in asking:
            instances[name].use_llm(config)

    dataset, result = load_split(
        data, split_method, seed, test_fraction, train_file, test_file, source, min_rating, kcore
    )
    check_k_in_catalog(ks, result)
    n_users = int((result.test.matrix.getnnz(axis=1) > 0).sum())
    n_users = min(n_users, max_users or n_users)
    with progress_bar() as progress:
        tasks = {
            name: progress.add_task(f"{name}: waiting", total=n_users, start=False)
            for name in names
        }

        def on_event(name: str, stage: str, n: int) -> None:
            if stage == "fit":
                progress.start_task(tasks[name])
                progress.update(tasks[name], description=f"{name}: fitting")
            else:
                progress.update(tasks[name], description=f"{name}: scoring", advance=n)

        report = evaluate_models(
            instances,
            result,
            ks,
            seed=seed,
            filtering={"min_rating": min_rating, "kcore": kcore},
            batch_size=batch_size,
            on_event=on_event,
            rare_below=rare_below,
            max_users=max_users,
        )
    report.dataset = dataset.name
    report.split.setdefault("protocol", {})["ks"] = ks
    print_report(report)
    if explanations:
        report.explanations = measure_explanations(instances, result, ks[0], explain_users, seed)
    if json_path is not None:
        from whyrec.evaluation.report import write_atomic
        from whyrec.jsonout import dumps

        write_atomic(json_path, dumps(report.to_dict(), indent=2))
        console.print(f"JSON → {json_path}")
    if report_path is not None:
        from whyrec.evaluation.report import write_html

        write_html(report, report_path)
        console.print(f"HTML report → {report_path}")
