"""The `whyrec` command: a thin shell over the library.

Each command checks its options, calls one or two library functions and prints. User
mistakes (`WhyrecError`) become one red line and exit code 2, never a traceback; a bug
becomes one line naming a log file that holds the traceback, and exit code 70.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from whyrec.commands.checks import (
    check_choice,
    check_fraction,
    check_input_file,
    check_k,
    check_output_dir,
)
from whyrec.commands.options import (
    BundleOpt,
    HistoryOpt,
    KcoreOpt,
    MinRatingOpt,
    ModelOpt,
    OnBadRowsOpt,
    ParamOpt,
    SourceOpt,
    UserOpt,
    WithOpt,
    WithoutOpt,
    YearsOpt,
    load_data,
    resolve_request,
)
from whyrec.errors import WhyrecError

app = typer.Typer(
    name="whyrec",
    help="A recommender system that talks and explains.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Fetch, inspect and split datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console(highlight=False, soft_wrap=True)


# ----- data --------------------------------------------------------------------------
@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="ml-latest-small, ml-100k, ml-1m or ml-25m.")],
    source: SourceOpt = None,
    refresh: Annotated[bool, typer.Option(help="Discard the cached copy first.")] = False,
) -> None:
    """Download (or copy from a local source) a public dataset, verified by SHA-256."""
    from whyrec.data.fetch import fetch

    path = fetch(name, source=source, refresh=refresh)
    out.print(f"{name}: {path}")


@data_app.command("info")
def data_info(
    data: Annotated[str, typer.Argument(help="A dataset name or a data directory.")],
    source: SourceOpt = None,
    min_rating: MinRatingOpt = None,
    kcore: KcoreOpt = None,
    on_bad_rows: OnBadRowsOpt = "error",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Users, items, interactions, density, time range and attribute fields."""
    from whyrec.jsonout import dumps

    info = load_data(data, source, min_rating, kcore, on_bad_rows).info()
    if as_json:
        print(dumps(info, indent=2))
        return
    table = Table(title=f"dataset {info['name']}", show_header=False)
    for key in ("users", "items", "items_with_interactions", "interactions"):
        table.add_row(key.replace("_", " "), f"{info[key]:,}")
    table.add_row("density", f"{info['density']:.4%}")
    table.add_row("explicit ratings", "yes" if info["rated"] else "no")
    if "time_range" in info:
        table.add_row("time range", " → ".join(t[:10] for t in info["time_range"]))
    fields = ", ".join(f"{k} ({v} values)" for k, v in info["attribute_fields"].items())
    table.add_row("attribute fields", fields or "none")
    out.print(table)


@data_app.command("split")
def data_split(
    data: Annotated[str, typer.Argument(help="A dataset name or a data directory.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for train.csv and test.csv.")],
    method: Annotated[
        str, typer.Option(help="loo, user-temporal, temporal, random, fixed or cold-users.")
    ] = "loo",
    seed: int = 42,
    test_fraction: float = 0.2,
    fraction: Annotated[
        float | None, typer.Option(help="For --method cold-users: the share of users held out.")
    ] = None,
    train_file: Annotated[Path | None, typer.Option(help="For --method fixed.")] = None,
    test_file: Annotated[Path | None, typer.Option(help="For --method fixed.")] = None,
    source: SourceOpt = None,
    min_rating: MinRatingOpt = None,
    kcore: KcoreOpt = None,
    on_bad_rows: OnBadRowsOpt = "error",
) -> None:
    """Write a reproducible train/test split in the canonical format."""
    from whyrec.data.splits import SPLIT_METHODS, split

    check_choice(method, SPLIT_METHODS, "--method")
    check_fraction(test_fraction, "--test-fraction")
    check_input_file(train_file, "--train-file")
    check_input_file(test_file, "--test-file")
    check_output_dir(out_dir, "--out")
    result = split(
        load_data(data, source, min_rating, kcore, on_bad_rows),
        method,
        seed=seed,
        test_fraction=fraction if fraction is not None else test_fraction,
        train_file=train_file,
        test_file=test_file,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    result.train.interactions.to_csv(out_dir / "train.csv", index=False)
    result.test.interactions.to_csv(out_dir / "test.csv", index=False)
    if method == "cold-users":  # targets for `whyrec simulate --targets`
        result.test.interactions[["user_id", "item_id"]].to_csv(
            out_dir / "targets.csv", index=False
        )
    out.print(
        f"{result.describe()}: {len(result.train):,} train and {len(result.test):,} test "
        f"interactions in {out_dir}"
    )


# ----- train / recommend -------------------------------------------------------------
@app.command()
def train(
    data: Annotated[
        str, typer.Option(help="A dataset name or a data directory.")
    ] = "ml-latest-small",
    model: ModelOpt = "ease",
    out_dir: Annotated[Path, typer.Option("--out", help="Bundle folder to write.")] = Path(
        "bundles/default"
    ),
    param: ParamOpt = None,
    source: SourceOpt = None,
    min_rating: MinRatingOpt = None,
    kcore: KcoreOpt = None,
    on_bad_rows: OnBadRowsOpt = "error",
    holdout: Annotated[
        str | None,
        typer.Option(help="Hold out a test split (loo, user-temporal, ...) kept in the bundle."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for --holdout.")] = 42,
    engine: Annotated[
        str, typer.Option(help="local, or spark (ials on Spark MLlib ALS, same bundle).")
    ] = "local",
    master: Annotated[str, typer.Option(help="Spark master URL for --engine spark.")] = "local[*]",
    calibrate: Annotated[
        bool,
        typer.Option(
            help="Fit the conversation policy on simulated training users and the free-text"
            " query blend on pseudo-queries (seconds; the blend needs the text encoder)."
        ),
    ] = True,
) -> None:
    """Train a model on a dataset (all of it, or the train part of --holdout) and save a bundle."""
    from whyrec.bundle import Bundle, check_bundle_target
    from whyrec.commands.evaluate import canonical_model_name, parse_model_params
    from whyrec.data.splits import SPLIT_METHODS, split
    from whyrec.models import model_class
    from whyrec.spark import check_engine

    name = canonical_model_name(model)
    recommender = model_class(name)(**parse_model_params(param, [name])[name])
    check_engine(engine, recommender)
    if holdout is not None:
        check_choice(holdout, [m for m in SPLIT_METHODS if m != "fixed"], "--holdout")
    check_output_dir(out_dir, "--out")
    check_bundle_target(out_dir)
    dataset = load_data(data, source, min_rating, kcore, on_bad_rows)
    test = None
    if holdout:
        held = split(dataset, holdout, seed=seed)
        dataset, test = held.train, held.test
    started = time.perf_counter()
    with out.status(f"fitting {recommender!r} on {len(dataset):,} interactions ({engine})"):
        if engine == "spark":
            from whyrec.spark import fit_ials_on_spark

            recommender = fit_ials_on_spark(recommender, dataset, master)
        else:
            recommender.fit(dataset)
    seconds = time.perf_counter() - started
    info = {
        "engine": engine if engine == "local" else f"spark ({master})",
        "fit_seconds": round(seconds, 3),
        "min_rating": min_rating,
        "kcore": kcore,
        "holdout": holdout,
        "seed": seed if holdout else None,
    }
    bundle = Bundle(recommender, dataset, info, test=test)
    if calibrate:
        from whyrec.conversation.calibrate import calibrate as fit_policy
        from whyrec.engine import Engine

        with out.status("fitting the conversation policy on simulated training users"):
            info["conversation_policy"] = fit_policy(Engine(bundle), seed=seed)
        from whyrec.text.wishes import encoder_available

        if encoder_available():
            from whyrec.text.query_blend import calibrate_query_blend

            with out.status("fitting the free-text query blend on pseudo-queries"):
                info["text_query"] = calibrate_query_blend(dataset, seed=seed)
    bundle.save(out_dir)
    out.print(f"trained {recommender!r} in {seconds:.1f}s → {out_dir}")


@app.command()
def recommend(
    bundle: BundleOpt,
    user: UserOpt = None,
    history: HistoryOpt = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of items.")] = 10,
    with_value: WithOpt = None,
    without_value: WithoutOpt = None,
    years: YearsOpt = None,
    reasons: Annotated[
        int, typer.Option(min=1, max=50, help="History items cited per recommendation.")
    ] = 3,
    explain: Annotated[
        bool, typer.Option("--explain", help="Say why, in sentences (JSON: full evidence).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    query: Annotated[
        str | None,
        typer.Option("--query", help='A description in words, e.g. "a heist film with a twist".'),
    ] = None,
) -> None:
    """Top-k recommendations for a user, a list of liked titles or a description, with
    the reasons."""
    from whyrec.bundle import Bundle
    from whyrec.engine import Engine
    from whyrec.jsonout import dumps

    check_k(k)
    engine = Engine(Bundle.load(bundle))
    if query is not None and not query.strip():
        raise WhyrecError("--query is empty; describe what you want in words")
    request = resolve_request(
        engine, user, history, with_value, without_value, years, k, text=query
    )
    items = engine.run(request, top_reasons=reasons)
    positions = request.history
    if as_json:
        payload = {"user": user, "items": items.to_dicts(with_explanation=explain)}
        if query is not None:
            payload["query"] = query
        print(dumps(payload))
        return
    _print_recommendations(engine, user, positions, items, request.text)
    if explain:
        from whyrec.explain.render import sentences

        for item in items:
            if item.explanation is not None:
                out.print(f"[bold]{item.rank}. {item.title}[/bold] — {sentences(item.explanation)}")


def _print_recommendations(engine, user, positions, items, text: str | None = None) -> None:
    who = f"user {user}" if user is not None else "this history"
    sample = ", ".join(engine.catalog.titles[p] for p in positions[-3:])
    if text is None:
        title = f"{len(items)} recommendations for {who}"
    elif user is None and not len(positions):
        title = f"{len(items)} recommendations for “{text}”"
    else:
        title = f"{len(items)} recommendations for “{text}”, {who}"
    out.print(escape(title), style="bold", end=" " if len(positions) else "\n")
    if len(positions):
        out.print(escape(f"({len(positions)} items, latest: {sample})"))
    if not items:
        out.print("[yellow]no item satisfies the filters[/yellow]")
        return
    described = text is not None and not len(positions)
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("title")
    table.add_column("score", justify="right")
    table.add_column("fits by" if described else "because you liked (share of score)")
    for item in items:
        if described:
            because = _fits_by(item.explanation)
        else:
            because = "; ".join(f"{c.title} ({c.share:.0%})" for c in item.because) or "—"
        table.add_row(str(item.rank), item.title, f"{item.score:.3f}", escape(because))
    out.print(table)


def _fits_by(explanation) -> str:
    """The table's short reason for a described item: the values the description names
    that it has, or else how close its whole text is."""
    from whyrec.explain.render import describe_values

    match = explanation.description if explanation is not None else None
    if match is None:
        return "—"
    named = describe_values([(name, value) for name, value, _ in match.values])
    return named or f"its text (cosine {match.cosine:.2f})"


from whyrec.commands.chat import chat  # noqa: E402
from whyrec.commands.evaluate import evaluate  # noqa: E402
from whyrec.commands.explain import explain_command  # noqa: E402
from whyrec.commands.explain_eval import explain_eval_command  # noqa: E402
from whyrec.commands.interpret import interpret_command  # noqa: E402
from whyrec.commands.llm_check import llm_app  # noqa: E402
from whyrec.commands.serve import serve  # noqa: E402
from whyrec.commands.simulate import simulate  # noqa: E402
from whyrec.commands.synth import data_synth  # noqa: E402
from whyrec.commands.tune import tune  # noqa: E402

app.command()(evaluate)
app.command()(tune)
app.command(name="explain")(explain_command)
app.command(name="explain-eval")(explain_eval_command)
app.command()(chat)
app.command()(simulate)
app.command(name="interpret")(interpret_command)
app.command()(serve)
app.add_typer(llm_app, name="llm")
data_app.command("synth")(data_synth)


EXIT_USER_ERROR = 2
"""A mistake in what was typed or given (as click's own usage errors)."""
EXIT_BUG = 70
"""Something whyrec did not expect (BSD's EX_SOFTWARE): a bug to report, with its log."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _crash_log(exc: BaseException) -> Path:
    """Write the traceback to a fresh log file and return its path."""
    import tempfile
    import traceback

    fd, name = tempfile.mkstemp(prefix="whyrec-crash-", suffix=".log")
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(f"whyrec {' '.join(sys.argv[1:])}\n")
        handle.write("".join(traceback.format_exception(exc)))
    return Path(name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line and exit 2; anything else one line, a log
    file with the traceback and exit 70 (so scripts can tell a bug from a typo)."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        app(args=argv, prog_name="whyrec")
    except WhyrecError as exc:
        err.print(f"[red]error:[/red] {escape(_one_line(exc))}")
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:  # `whyrec ... | head`: the reader left, nothing to report
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        sys.exit(EXIT_USER_ERROR)
    except Exception as exc:
        log = _crash_log(exc)
        err.print(
            f"[red]internal error:[/red] {type(exc).__name__}: {escape(_one_line(exc)[:300])} "
            f"(traceback in {escape(str(log))}; please report it)"
        )
        sys.exit(EXIT_BUG)


if __name__ == "__main__":
    main()
