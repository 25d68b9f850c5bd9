"""Out-of-core reading of large interaction files (Parquet or CSV) with pyarrow.

pandas reads a 1e8-row log as two columns of Python strings: ~12 GB before any model
sees it. Here the file is streamed in record batches; each batch's ids are
dictionary-encoded by Arrow (C++), only the batch's *distinct* ids meet Python, and what
is kept per interaction is two int32 codes, a float32 rating and an int64 time (20 bytes).
The result is the canonical frame with categorical id columns, so everything built on
`Dataset` works unchanged while memory grows with the number of interactions, never with
users × items, and the Dataset's id lookups run once per distinct id instead of per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from whyrec.errors import DataError

CHUNK_ROWS = 1 << 20
"""Rows per record batch: bounds the transient memory of one step (~100 MB)."""
LARGE_CSV_BYTES = 64 << 20
"""CSV files above this size are streamed; smaller ones take pandas' simpler path."""


class _Vocabulary:
    """Distinct ids in order of first appearance → int32 codes, grown batch by batch."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}

    def encode(self, column: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(column)
        local = encoded.dictionary.cast(pa.string()).to_pylist()
        setdefault, codes = self.codes.setdefault, self.codes
        mapping = np.fromiter(
            (setdefault(value, len(codes)) for value in local), dtype=np.int32, count=len(local)
        )
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)]

    def categories(self) -> pd.Index:
        return pd.Index(list(self.codes), dtype=object)


def _batches(path: Path, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of the file's interaction columns, every column as Arrow reads it."""
    try:
        if path.suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            names = parquet.schema_arrow.names
            _check_columns(names, path)
            wanted = [c for c in ("user_id", "item_id", "rating", "timestamp") if c in names]
            yield from parquet.iter_batches(batch_size=chunk_rows, columns=wanted)
            return
        delimiter = "\t" if path.suffix == ".tsv" else ","
        header = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 16),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
        ).schema.names
        _check_columns(header, path)
        wanted = [c for c in ("user_id", "item_id", "rating", "timestamp") if c in header]
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=32 << 20),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: pa.string() for c in wanted},
                strings_can_be_null=True,
            ),
        )
        yield from reader
    except (pa.ArrowInvalid, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot parse {path}: {first}") from None


def _check_columns(names: list[str], path: Path) -> None:
    for column in ("user_id", "item_id"):
        if column not in names:
            raise DataError(f"{path.name} is missing column {column!r} (found: {', '.join(names)})")


def _ids(column: pa.Array, name: str, seen_rows: int) -> pa.Array:
    """Ids as trimmed strings (integers are encoded first, then only distinct ones cast)."""
    if pa.types.is_integer(column.type):
        return column
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    empty = pc.sum(pc.or_kleene(pc.is_null(text), pc.equal(text, ""))).as_py() or 0
    if empty:
        raise DataError(f"{empty} interaction rows have an empty {name} (after row {seen_rows})")
    return text


def _ratings(
    column: pa.Array | None, rows: int, path: Path, seen_rows: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """(ratings, rows to keep or None for all): text that is no number is an error naming
    the line, or a dropped row under `--on-bad-rows skip` (see ratings.numeric_ratings)."""
    from whyrec.data.ratings import numeric_ratings

    if column is None:
        return np.full(rows, np.nan, dtype=np.float32), None
    try:
        return column.cast(pa.float32()).to_numpy(zero_copy_only=False).astype(np.float32), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values, keep = numeric_ratings(pd.Series(column.to_pylist()), path, 1 + seen_rows)
        return values, None if keep.all() else keep


def to_epoch_seconds(times: pd.Series) -> np.ndarray:
    """Accept epoch seconds or date strings."""
    numeric = pd.to_numeric(times, errors="coerce")
    if numeric.notna().all():
        return numeric.astype(np.int64).to_numpy()
    parsed = pd.to_datetime(times, errors="coerce", utc=True)
    if parsed.isna().any():
        bad = times[parsed.isna()].iloc[0]
        raise DataError(f"cannot read timestamp {bad!r}: use epoch seconds or ISO dates")
    # pandas 3 may parse to µs resolution: count seconds explicitly, not ns // 1e9
    epoch = pd.Timestamp(0, tz="UTC")
    return ((parsed - epoch) // pd.Timedelta(seconds=1)).astype(np.int64).to_numpy()


def _times(column: pa.Array) -> np.ndarray:
    if column.null_count:
        raise DataError(f"{column.null_count} interaction rows have no timestamp")
    try:
        return column.cast(pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return to_epoch_seconds(pd.Series(column.to_pylist()))


def read_interactions_chunked(
    path: Path, chunk_rows: int = CHUNK_ROWS, progress=None
) -> tuple[pd.DataFrame, bool]:
    """The canonical interactions frame of a big file, ids as categoricals; (frame, has_times).

    `progress`, if given, is called with the number of rows of each batch read.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    users, items = _Vocabulary(), _Vocabulary()
    user_codes, item_codes, ratings, times = [], [], [], []
    has_times: bool | None = None
    rows = 0
    for batch in _batches(path, chunk_rows):
        if batch.num_rows == 0:
            continue
        names = batch.schema.names
        rating, keep = _ratings(
            batch.column("rating") if "rating" in names else None, batch.num_rows, path, rows
        )
        if keep is not None:
            batch = batch.filter(pa.array(keep))
            rating = rating[keep]
        user_codes.append(users.encode(_ids(batch.column("user_id"), "user_id", rows)))
        item_codes.append(items.encode(_ids(batch.column("item_id"), "item_id", rows)))
        ratings.append(rating)
        has_times = "timestamp" in names
        if has_times:
            times.append(_times(batch.column("timestamp")))
        else:  # row order stands in for time, as in the in-memory reader
            times.append(np.arange(rows, rows + batch.num_rows, dtype=np.int64))
        rows += batch.num_rows
        if progress:
            progress(batch.num_rows)
    if rows == 0:
        raise DataError(f"{path} has no rows")
    frame = pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(
                np.concatenate(user_codes), categories=users.categories()
            ),
            "item_id": pd.Categorical.from_codes(
                np.concatenate(item_codes), categories=items.categories()
            ),
            "rating": np.concatenate(ratings),
            "timestamp": np.concatenate(times),
        },
        copy=False,
    )
    return frame, bool(has_times)


def should_stream(path: Path) -> bool:
    """Parquet always streams; CSV above `LARGE_CSV_BYTES` does."""
    path = Path(path)
    return path.suffix == ".parquet" or (path.exists() and path.stat().st_size > LARGE_CSV_BYTES)
