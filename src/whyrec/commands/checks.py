"""Checks every command runs on what the user typed before doing any work.

A typo in an output path or a bound should cost a second, not a fit: each command calls
these on its options first, and each failure is a `WhyrecError` (one line, exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path

from whyrec.errors import WhyrecError

MAX_K = 100_000
"""The largest list length any command accepts. Every k is also capped by the catalog
once it is loaded; this bound refuses absurd values (10^9 would allocate terabytes of
per-user ranks) before any data is read."""

MAX_COUNT = 10_000_000
"""The largest count of episodes, sampled users, epochs or latents a command accepts."""


def check_k(value: int, option: str = "--k") -> int:
    """A list length between 1 and MAX_K."""
    if not 1 <= value <= MAX_K:
        raise WhyrecError(f"{option} must be between 1 and {MAX_K:,}, got {value:,}")
    return value


def check_count(value: int | None, option: str, upper: int = MAX_COUNT) -> int | None:
    """A positive count below `upper` (None passes: the option was not given)."""
    if value is not None and not 1 <= value <= upper:
        raise WhyrecError(f"{option} must be between 1 and {upper:,}, got {value:,}")
    return value


def check_fraction(value: float, option: str) -> float:
    """A share strictly between 0 and 1 (NaN is not)."""
    if not 0 < value < 1:
        raise WhyrecError(f"{option} must be between 0 and 1 (exclusive), got {value}")
    return value


def check_finite(value: float | None, option: str) -> float | None:
    """A real number (NaN and infinities are refused); None passes."""
    if value is not None and not (value == value and abs(value) != float("inf")):
        raise WhyrecError(f"{option} must be a finite number, got {value}")
    return value


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder above `path` (or `path` itself) that exists."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_output_dir(path: Path, option: str) -> Path:
    """A folder that exists or can be made, and that we may write in."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WhyrecError(f"{option} {path} is a file, not a folder")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise WhyrecError(f"{option} {path}: {base} is a file, so no folder can be made under it")
    if not os.access(base, os.W_OK | os.X_OK):
        raise WhyrecError(f"{option} {path}: {base} is not writable")
    return path


def check_output_file(path: Path | None, option: str) -> Path | None:
    """A file name whose folder exists or can be made and is writable (None passes)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise WhyrecError(f"{option} {path} is a folder; give a file name")
    check_output_dir(path.parent if str(path.parent) else Path("."), option)
    if path.exists() and not os.access(path, os.W_OK):
        raise WhyrecError(f"{option} {path} is not writable")
    return path


def check_input_file(path: Path | None, option: str) -> Path | None:
    """An existing, readable file (None passes)."""
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        raise WhyrecError(f"{option} {path} does not exist")
    if path.is_dir():
        raise WhyrecError(f"{option} {path} is a folder; give a file")
    if not os.access(path, os.R_OK):
        raise WhyrecError(f"{option} {path} is not readable")
    return path


def check_choice(value: str, choices: tuple[str, ...] | list[str], option: str) -> str:
    if value not in choices:
        raise WhyrecError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_store(target: str, option: str = "--db") -> str:
    """A session store the command can open: a postgresql:// URL, or a SQLite file (also
    as sqlite:///relative or sqlite:////absolute) whose folder exists or can be made."""
    from whyrec.store import is_postgres_url, sqlite_path

    if is_postgres_url(target):
        return target
    path = sqlite_path(target)
    if path != ":memory:":
        check_output_file(Path(path), option)
    return target
