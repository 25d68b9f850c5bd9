"""Command-line options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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


def load_data(data: str, source: Path | None, min_rating: float | None, kcore: int | None):
    """Load a named dataset or a directory with the shared filtering options."""
    from whyrec.data.loaders import load_dataset

    return load_dataset(data, source=source, min_rating=min_rating, kcore=kcore)
