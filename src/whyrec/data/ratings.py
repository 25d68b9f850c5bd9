"""Ratings read from any file: what a rating that is not a number does (error or skip).

Shared by the loaders and the chunked reader (which must not import each other).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from whyrec.errors import DataError

BAD_ROW_POLICIES = ("error", "skip")
"""What to do with a row whose rating is not a number: stop with the file and line, or
drop it and say how many were dropped (`--on-bad-rows skip`)."""
_bad_rows: contextvars.ContextVar[str] = contextvars.ContextVar("bad_rows", default="error")


@contextlib.contextmanager
def bad_rows_policy(policy: str) -> Iterator[None]:
    """Read data under `policy` ("error" or "skip") for rows with a non-numeric rating."""
    if policy not in BAD_ROW_POLICIES:
        raise DataError(
            f"--on-bad-rows must be one of {', '.join(BAD_ROW_POLICIES)}, got {policy!r}"
        )
    token = _bad_rows.set(policy)
    try:
        yield
    finally:
        _bad_rows.reset(token)


def numeric_ratings(
    ratings: pd.Series, path: Path | None, header_lines: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(float32 ratings, mask of rows to keep). An empty cell is "unrated" (NaN); text that
    is not a number ("five") is an error naming the file and line, or, under
    `bad_rows_policy("skip")`, a dropped row counted in a warning."""
    raw = ratings.reset_index(drop=True)
    values = pd.to_numeric(raw, errors="coerce")
    blank = raw.isna() | raw.astype(str).str.strip().isin(["", "nan", "NaN"])
    bad = (values.isna() & ~blank).to_numpy()
    keep = ~bad
    if bad.any():
        where = path.name if path is not None else "the interactions"
        first = int(np.flatnonzero(bad)[0])
        if _bad_rows.get() == "error":
            raise DataError(
                f"{where} line {first + 1 + header_lines}: rating {str(raw.iloc[first])!r} is "
                f"not a number ({int(bad.sum())} such rows; --on-bad-rows skip drops them)"
            )
        from whyrec.console import warn

        warn(f"{where}: skipped {int(bad.sum())} rows whose rating is not a number")
    return values.astype(np.float32).to_numpy(), keep
