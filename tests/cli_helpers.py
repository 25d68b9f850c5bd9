"""Running the `whyrec` command in-process, as the CLI tests do."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from whyrec.cli import main
from whyrec.data.dataset import Dataset


def exit_code(argv: list[str]) -> int:
    """The exit code `whyrec ARGV` gives (typer ends every command with SystemExit)."""
    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `whyrec ARGS`."""
    code = exit_code(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_canonical(dataset: Dataset, folder: Path) -> Path:
    """A dataset's interactions and titles as the canonical CSV folder `--data` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset.interactions.to_csv(folder / "interactions.csv", index=False)
    titles = {"item_id": dataset.catalog.item_ids, "title": dataset.catalog.titles}
    pd.DataFrame(titles).to_csv(folder / "items.csv", index=False)
    return folder
