"""One place for what whyrec prints to people: warnings, notes and progress bars."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/yellow] {message}")


def note(message: str) -> None:
    err_console.print(f"[dim]{message}[/dim]")


def download_progress() -> Progress:
    """A byte-counting progress bar on stderr (hidden when stderr is not a terminal)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not sys.stderr.isatty(),
    )


def count_progress(with_status: bool = False, transient: bool = False) -> Progress:
    """A counting progress bar (rows, steps, epochs) on stderr, hidden when not a terminal.

    The one progress display of the CLI: library code reports progress through plain
    callbacks (`progress=`, `on_batch=`) and commands draw them with this bar.
    `with_status` adds a free-text column fed by `progress.update(task, status=...)`
    (a running loss, say); tasks must then be added with `status=""`. `transient`
    clears the bar when done.
    """
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if with_status:
        columns.append(TextColumn("{task.fields[status]}"))
    return Progress(
        *columns,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not sys.stderr.isatty(),
        transient=transient,
    )
