"""Command-line options shared by several commands, defined once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from whyrec.models.registry import MODEL_ALIASES, MODELS

ModelOpt = Annotated[
    str,
    typer.Option(help=f"Model name: {', '.join(MODELS)} (also {', '.join(MODEL_ALIASES)})."),
]
SourceOpt = Annotated[
    Path | None,
    typer.Option(help="Local folder holding NAME.zip or NAME/ (default: $WHYREC_DATA_DIR)."),
]
MinRatingOpt = Annotated[
    float | None, typer.Option(help="Count only ratings >= this as positives (default: all).")
]
KcoreOpt = Annotated[
    int | None, typer.Option(help="Keep only users and items with >= k interactions.")
]
BundleOpt = Annotated[Path, typer.Option(help="A bundle folder written by `whyrec train`.")]
UserOpt = Annotated[str | None, typer.Option(help="A user id of the training data.")]
HistoryOpt = Annotated[
    str | None, typer.Option(help="Titles or item ids, comma-separated (or ';').")
]
WithOpt = Annotated[
    list[str] | None, typer.Option("--with", help="Only items with FIELD=VALUE[|VALUE].")
]
WithoutOpt = Annotated[
    list[str] | None, typer.Option("--without", help="No items with FIELD=VALUE[|VALUE].")
]
YearsOpt = Annotated[str | None, typer.Option(help="Year range, e.g. 1990-1999 or 2010-.")]
OnBadRowsOpt = Annotated[
    str,
    typer.Option(
        help="A rating that is not a number: error (name the file and line) or skip (count)."
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="Hyper-parameter MODEL.NAME=VALUE, e.g. ease.reg=250 (MODEL. optional with one "
        "model; repeatable)."
    ),
]


def check_data_options(min_rating: float | None, kcore: int | None, on_bad_rows: str) -> None:
    """The shared data options, checked before anything is read."""
    from whyrec.commands.checks import check_choice, check_count, check_finite
    from whyrec.data.loaders import BAD_ROW_POLICIES

    check_finite(min_rating, "--min-rating")
    check_count(kcore, "--kcore")
    check_choice(on_bad_rows, BAD_ROW_POLICIES, "--on-bad-rows")


def load_data(
    data: str,
    source: Path | None,
    min_rating: float | None,
    kcore: int | None,
    on_bad_rows: str = "error",
):
    """Load a named dataset or a directory with the shared filtering options."""
    from whyrec.data.loaders import load_dataset

    check_data_options(min_rating, kcore, on_bad_rows)
    return load_dataset(
        data, source=source, min_rating=min_rating, kcore=kcore, on_bad_rows=on_bad_rows
    )


def resolve_request(
    engine,
    user: str | None,
    history: str | None,
    with_value: list[str] | None,
    without_value: list[str] | None,
    years: str | None,
    k: int = 10,
    text: str | None = None,
):
    """The `Query` of the options `recommend` and `explain` share (`Engine.query` resolves
    the person and checks the filter against the catalog, as the API does).

    Exactly one of a known user or a list of titles/ids stands for the person (or
    neither, when a description in words, `text`, says what is wanted).
    """

    from whyrec.errors import WhyrecError
    from whyrec.filters import ItemFilter, parse_assignments, parse_years

    if user is not None and history is not None:
        raise WhyrecError("give exactly one of --user or --history, not both")
    if user is None and history is None and text is None:
        raise WhyrecError("give exactly one of --user or --history (or a --query)")
    low, high = parse_years(years)
    item_filter = ItemFilter(
        parse_assignments(with_value, "--with"),
        parse_assignments(without_value, "--without"),
        low,
        high,
    )
    references = None if history is None else split_history(history)
    return engine.query(user, references, item_filter, k, text)


_ARTICLE_FRAGMENT = re.compile(
    r"^\s*(the|a|an|les|la|le|l'|il|el|der|die|das|inc\.?|jr\.?|sr\.?|ltd\.?)\s*"
    r"(\(\d{4}\))?\s*$",
    re.IGNORECASE,
)


def split_history(text: str) -> list[str]:
    """Split "Toy Story (1995),American President, The (1995)" into titles.

    A comma-separated fragment that is only an article (MovieLens' "…, The (1995)") or a
    suffix ("Monsters, Inc.") is glued back to the title before it; ';' works as an
    unambiguous separator too.
    """
    if ";" in text:
        return [p.strip() for p in text.split(";") if p.strip()]
    parts: list[str] = []
    for fragment in text.split(","):
        if parts and _ARTICLE_FRAGMENT.match(fragment):
            parts[-1] = f"{parts[-1]},{fragment}"
        elif fragment.strip():
            parts.append(fragment.strip())
    return parts
