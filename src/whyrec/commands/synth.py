"""`whyrec data synth`: write a seeded synthetic dataset in the canonical format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from whyrec.errors import DataError

out = Console(highlight=False, soft_wrap=True)


def data_synth(
    users: Annotated[int, typer.Option(help="Number of users.")],
    items: Annotated[int, typer.Option(help="Number of catalogue items.")],
    interactions: Annotated[int, typer.Option(help="Number of distinct interactions.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the dataset to.")],
    seed: Annotated[int, typer.Option(help="Seed: the same seed writes the same files.")] = 0,
    shape: Annotated[
        str,
        typer.Option(
            help="Attribute fields: movies, lastfm (one multi-valued field), yelp (category "
            "paths, 30 × 20 by default), fields (several single-valued fields)."
        ),
    ] = "movies",
    values: Annotated[
        int, typer.Option(help="Values of the lastfm field / top-level yelp categories.")
    ] = 30,
    file_format: Annotated[
        str, typer.Option("--format", help="csv, parquet or auto (Parquet above 1e6 rows).")
    ] = "auto",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a dataset already in --out.")
    ] = False,
) -> None:
    """Synthetic interactions + items with power-law popularity and activity, latent tastes,
    taste-correlated attributes and timestamps; generated in blocks of users."""
    from whyrec.commands.checks import check_choice, check_output_dir
    from whyrec.console import count_progress
    from whyrec.data.synth import SynthConfig, write_synthetic

    check_choice(file_format, ("auto", "csv", "parquet"), "--format")
    check_output_dir(out_dir, "--out")
    try:
        config = SynthConfig(
            users=users,
            items=items,
            interactions=interactions,
            seed=seed,
            shape=shape,
            values=values,
        )
    except ValidationError as exc:
        problems = (e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise DataError("; ".join(problems)) from None
    with count_progress() as progress:
        task = progress.add_task("generating", total=interactions)
        paths = write_synthetic(
            config,
            out_dir,
            file_format,
            progress=lambda n: progress.advance(task, n),
            overwrite=overwrite,
        )
    out.print(
        f"wrote {interactions:,} interactions of {users:,} users over {items:,} items → "
        f"{paths['interactions']} and {paths['items']}"
    )
