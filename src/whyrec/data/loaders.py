"""Read interaction logs and catalogs from MovieLens layouts and the canonical format.

The canonical format (README, "Your own data") is a directory with `interactions.csv`
(`user_id,item_id[,rating][,timestamp]`) and `items.csv` (`item_id,title[,year]
[,description]`, every other column an attribute field, `|` between multiple values);
Parquet files with the same columns work too.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from whyrec.data.catalog import Catalog, decade_of, year_from_title
from whyrec.data.dataset import Dataset
from whyrec.data.ratings import BAD_ROW_POLICIES, bad_rows_policy, numeric_ratings  # noqa: F401
from whyrec.errors import DataError

MULTI_VALUE_SEPARATOR = "|"
MIN_TAG_ITEMS = 2
"""A MovieLens tag becomes an attribute value when at least this many items carry it."""


_NO_GENRE = "(no genres listed)"
_TAG_JUNK = re.compile(r"[\"'`]+")


# ----- helpers -----------------------------------------------------------------------
def read_table(path: Path, **kwargs) -> pd.DataFrame:
    """Read a CSV or Parquet file, turning pandas' errors into one-line messages."""
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot parse {path}: {first}") from None
    if frame.empty:
        raise DataError(f"{path} has no rows")
    return frame


def _require_columns(frame: pd.DataFrame, required: list[str], path: Path) -> None:
    found = [str(c) for c in frame.columns]
    for column in required:
        if column not in found:
            close = difflib.get_close_matches(column, found, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(
                f"{path.name} is missing column {column!r} (found: {', '.join(found)}){hint}"
            )


def interactions_frame(
    users: pd.Series,
    items: pd.Series,
    ratings: pd.Series | None,
    times: pd.Series | None,
    path: Path | None = None,
    header_lines: int = 1,
) -> tuple[pd.DataFrame, bool]:
    """Build the canonical interactions frame; row order stands in for missing times."""
    keep = None
    if ratings is not None:
        rating_values, keep = numeric_ratings(ratings, path, header_lines)
        if keep.all():
            keep = None
    else:
        rating_values = np.full(len(users), np.nan, dtype=np.float32)
    if keep is not None:
        users, items = users[keep], items[keep]
        rating_values = rating_values[keep]
        times = times[keep] if times is not None else None
    frame = pd.DataFrame(
        {
            "user_id": users.astype(str).str.strip().to_numpy(dtype=object),
            "item_id": items.astype(str).str.strip().to_numpy(dtype=object),
            "rating": rating_values,
        }
    )
    has_times = times is not None
    if has_times:
        from whyrec.data.chunked import to_epoch_seconds  # pyarrow loads only when needed

        stamps = to_epoch_seconds(times)
        frame["timestamp"] = stamps
    else:
        frame["timestamp"] = np.arange(len(frame), dtype=np.int64)
    if frame["user_id"].isin(["", "nan"]).any() or frame["item_id"].isin(["", "nan"]).any():
        bad = int((frame["user_id"].isin(["", "nan"]) | frame["item_id"].isin(["", "nan"])).sum())
        raise DataError(f"{bad} interaction rows have an empty user_id or item_id")
    return frame, has_times


def _split_values(cell: object) -> tuple[str, ...]:
    if cell is None or (isinstance(cell, float) and math.isnan(cell)):
        return ()
    if isinstance(cell, list | tuple | np.ndarray):
        return tuple(str(v).strip() for v in cell if str(v).strip())
    return tuple(v.strip() for v in str(cell).split(MULTI_VALUE_SEPARATOR) if v.strip())


def normalize_tag(tag: str) -> str:
    """Lower-case, unquoted, single-spaced: "Pixar " and "pixar" are one tag."""
    return " ".join(_TAG_JUNK.sub("", str(tag)).lower().split())


def _add_missing_items(catalog: Catalog, frame: pd.DataFrame) -> Catalog:
    """Give items that appear only in the interactions a placeholder entry (no data lost)."""
    missing = pd.unique(frame.loc[~frame["item_id"].isin(set(catalog.item_ids)), "item_id"])
    if len(missing) == 0:
        return catalog
    from whyrec.console import warn

    warn(
        f"{len(missing)} items appear in the interactions but not in the items file; "
        "they are kept with their id as title"
    )
    n = len(missing)
    return Catalog(
        item_ids=catalog.item_ids + [str(m) for m in missing],
        titles=catalog.titles + [f"Item {m}" for m in missing],
        years=np.concatenate([catalog.years, np.full(n, np.nan)]),
        attributes={k: v + [()] * n for k, v in catalog.attributes.items()},
        descriptions=catalog.descriptions + [""] * n if catalog.descriptions else None,
    )


# ----- canonical format ------------------------------------------------------------------
def _find_file(directory: Path, stem: str) -> Path | None:
    for suffix in (".csv", ".parquet", ".tsv"):
        candidate = directory / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


def read_canonical_interactions(path: Path) -> tuple[pd.DataFrame, bool]:
    """Read a canonical interactions file (CSV with header, or Parquet).

    Parquet and large CSV files are streamed in chunks into categorical id columns
    (`whyrec.data.chunked`), so memory follows the number of interactions.
    """
    from whyrec.data.chunked import read_interactions_chunked, should_stream

    if should_stream(path):
        return read_interactions_chunked(path)
    frame = read_table(path, dtype={"user_id": str, "item_id": str})
    _require_columns(frame, ["user_id", "item_id"], path)
    return interactions_frame(
        frame["user_id"],
        frame["item_id"],
        frame["rating"] if "rating" in frame else None,
        frame["timestamp"] if "timestamp" in frame else None,
        path,
    )


def read_canonical_items(path: Path) -> Catalog:
    """Read a canonical items file; every column beyond the known ones is an attribute."""
    frame = read_table(path, dtype=str, keep_default_na=False)
    _require_columns(frame, ["item_id", "title"], path)
    titles = frame["title"].astype(str).str.strip().tolist()
    if "year" in frame:
        years = pd.to_numeric(frame["year"].replace("", np.nan), errors="coerce").to_numpy(float)
    else:
        years = np.array([year_from_title(t) for t in titles])
    known = {"item_id", "title", "year", "description"}
    attributes = {
        str(col): [_split_values(v) for v in frame[col].tolist()]
        for col in frame.columns
        if col not in known
    }
    descriptions = frame["description"].astype(str).tolist() if "description" in frame else None
    return Catalog(
        item_ids=frame["item_id"].astype(str).str.strip().tolist(),
        titles=titles,
        years=years,
        attributes=attributes,
        descriptions=descriptions,
    )


def load_canonical(directory: Path, name: str | None = None) -> Dataset:
    inter_path = _find_file(directory, "interactions")
    items_path = _find_file(directory, "items")
    if inter_path is None:
        raise DataError(f"{directory} has no interactions.csv or interactions.parquet")
    frame, has_times = read_canonical_interactions(inter_path)
    if items_path is None:
        from whyrec.console import warn

        warn(f"{directory} has no items.csv: titles will be the item ids")
        catalog = Catalog(item_ids=[], titles=[], years=np.array([]))
    else:
        catalog = read_canonical_items(items_path)
    catalog = _add_missing_items(catalog, frame)
    return Dataset(frame, catalog, name=name or directory.name, has_timestamps=has_times)


# ----- MovieLens -------------------------------------------------------------------------
def _movielens_catalog(
    item_ids: list[str],
    titles: list[str],
    genres: list[tuple[str, ...]],
    tags: dict[str, tuple[str, ...]] | None,
    described: dict[str, str] | None = None,
) -> Catalog:
    """`described`: item id → a description (every tag users gave it, see `_tag_descriptions`)."""
    years = np.array([year_from_title(t) for t in titles])
    attributes = {
        "genres": [tuple(g for g in gs if g != _NO_GENRE) for gs in genres],
        "decade": [decade_of(y) for y in years],
    }
    if tags is not None:
        attributes["tags"] = [tags.get(i, ()) for i in item_ids]
    descriptions = [described.get(i, "") for i in item_ids] if described else None
    return Catalog(
        item_ids=item_ids,
        titles=titles,
        years=years,
        attributes=attributes,
        descriptions=descriptions,
    )


def _tag_descriptions(tags: pd.DataFrame, keep: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Every tag users gave an item, most applied first, as its description text, less the
    frequent ones already in its `tags` field.

    MovieLens has no plot text; what people wrote about an item ("dead wife", "heist",
    "bubba gump shrimp") is the nearest thing, and a free-text query ("dreams within
    dreams heist") is matched against it. Rare tags are not attribute values (nobody is
    asked about "dead wife"), but as words they describe the item."""
    tags = tags.assign(tag=tags["tag"].map(normalize_tag), movieId=tags["movieId"].astype(str))
    tags = tags[tags["tag"] != ""]
    uses = tags.groupby(["movieId", "tag"]).size().rename("uses").reset_index()
    ordered = uses.sort_values(["movieId", "uses", "tag"], ascending=[True, False, True])
    out: dict[str, str] = {}
    for mid, group in ordered.groupby("movieId", sort=False):
        listed = set(keep.get(mid, ()))
        words = [t for t in group["tag"] if t not in listed]
        if words:
            out[mid] = "described as: " + ", ".join(words)
    return out


def _frequent_tags(
    tags: pd.DataFrame, min_items: int = MIN_TAG_ITEMS
) -> dict[str, tuple[str, ...]]:
    """Normalized tags per item, keeping tags that at least `min_items` items carry.

    Rare tags are mostly personal notes ("watched with mom"); frequent ones describe the
    item ("pixar", "dark comedy") and are worth asking about or citing.
    """
    tags = tags.assign(tag=tags["tag"].map(normalize_tag), movieId=tags["movieId"].astype(str))
    tags = tags[tags["tag"] != ""]
    per_item = tags.drop_duplicates(["movieId", "tag"])
    item_counts = per_item["tag"].value_counts()
    frequent = set(item_counts[item_counts >= min_items].index)
    per_item = per_item[per_item["tag"].isin(frequent)]
    # order each item's tags by how many users applied them there, most first
    uses = tags[tags["tag"].isin(frequent)].groupby(["movieId", "tag"]).size().rename("uses")
    ordered = uses.reset_index().sort_values(
        ["movieId", "uses", "tag"], ascending=[True, False, True]
    )
    return {mid: tuple(group["tag"]) for mid, group in ordered.groupby("movieId", sort=False)}


def _load_movielens_csv(directory: Path, name: str) -> Dataset:
    ratings = read_table(directory / "ratings.csv")
    _require_columns(
        ratings, ["userId", "movieId", "rating", "timestamp"], directory / "ratings.csv"
    )
    movies = read_table(directory / "movies.csv", dtype=str, keep_default_na=False)
    _require_columns(movies, ["movieId", "title", "genres"], directory / "movies.csv")
    tags = described = None
    if (directory / "tags.csv").exists():
        tag_frame = read_table(directory / "tags.csv", dtype={"tag": str}, keep_default_na=False)
        _require_columns(tag_frame, ["movieId", "tag"], directory / "tags.csv")
        tags = _frequent_tags(tag_frame)
        described = _tag_descriptions(tag_frame, tags)
    catalog = _movielens_catalog(
        movies["movieId"].str.strip().tolist(),
        movies["title"].str.strip().tolist(),
        [_split_values(g) for g in movies["genres"]],
        tags,
        described,
    )
    frame, _ = interactions_frame(
        ratings["userId"],
        ratings["movieId"],
        ratings["rating"],
        ratings["timestamp"],
        directory / "ratings.csv",
    )
    return Dataset(frame, _add_missing_items(catalog, frame), name=name)


_ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def _load_movielens_100k(directory: Path, name: str) -> Dataset:
    ratings = read_table(directory / "u.data", sep="\t", header=None, names=["u", "i", "r", "t"])
    items = read_table(
        directory / "u.item",
        sep="|",
        header=None,
        encoding="latin-1",
        dtype=str,
        keep_default_na=False,
    )
    if items.shape[1] < 5 + len(_ML100K_GENRES):
        raise DataError(f"{directory / 'u.item'} has {items.shape[1]} columns, expected 24")
    flags = items.iloc[:, 5 : 5 + len(_ML100K_GENRES)].to_numpy() == "1"
    genres = [
        tuple(g for g, on in zip(_ML100K_GENRES, row, strict=True) if on and g != "unknown")
        for row in flags
    ]
    catalog = _movielens_catalog(
        items[0].str.strip().tolist(), items[1].str.strip().tolist(), genres, None
    )
    frame, _ = interactions_frame(
        ratings["u"], ratings["i"], ratings["r"], ratings["t"], directory / "u.data", 0
    )
    return Dataset(frame, _add_missing_items(catalog, frame), name=name)


def _read_double_colon(path: Path, names: list[str]) -> pd.DataFrame:
    """ml-1m separates fields by '::'; reading it by hand avoids pandas' slow regex engine."""
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    rows = [line.split("::") for line in lines if line.strip()]
    if not rows:
        raise DataError(f"{path} is empty")
    if any(len(r) != len(names) for r in rows):
        raise DataError(f"{path} has rows without {len(names)} '::'-separated fields")
    return pd.DataFrame(rows, columns=names)


def _load_movielens_1m(directory: Path, name: str) -> Dataset:
    ratings = _read_double_colon(directory / "ratings.dat", ["u", "i", "r", "t"])
    movies = _read_double_colon(directory / "movies.dat", ["i", "title", "genres"])
    catalog = _movielens_catalog(
        movies["i"].tolist(),
        movies["title"].str.strip().tolist(),
        [_split_values(g.replace("Children's", "Children")) for g in movies["genres"]],
        None,
    )
    frame, _ = interactions_frame(
        ratings["u"], ratings["i"], ratings["r"], ratings["t"], directory / "ratings.dat", 0
    )
    return Dataset(frame, _add_missing_items(catalog, frame), name=name)


_LAYOUTS: list[tuple[tuple[str, ...], Callable[[Path, str], Dataset]]] = [
    (("ratings.csv", "movies.csv"), _load_movielens_csv),
    (("u.data", "u.item"), _load_movielens_100k),
    (("ratings.dat", "movies.dat"), _load_movielens_1m),
]


def detect_layout(directory: Path) -> str | None:
    """Name the layout of a data directory: 'canonical', 'movielens' or None."""
    if _find_file(directory, "interactions") is not None:
        return "canonical"
    for files, _ in _LAYOUTS:
        if all((directory / f).exists() for f in files):
            return "movielens"
    return None


def load_directory(directory: Path, name: str | None = None) -> Dataset:
    """Load any supported layout from a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory} is not a directory")
    if _find_file(directory, "interactions") is not None:
        return load_canonical(directory, name)
    for files, loader in _LAYOUTS:
        if all((directory / f).exists() for f in files):
            return loader(directory, name or directory.name)
    raise DataError(
        f"{directory} holds no known layout: expected interactions.csv (+ items.csv), "
        "or MovieLens files (ratings.csv + movies.csv, u.data + u.item, ratings.dat + movies.dat)"
    )


def load_dataset(
    spec: str | Path,
    *,
    source: Path | None = None,
    min_rating: float | None = None,
    kcore: int | None = None,
    on_bad_rows: str = "error",
) -> Dataset:
    """Load a named dataset (fetched or found locally) or a directory, then filter it.

    `on_bad_rows` ("error" or "skip") says what a rating that is not a number does."""
    from whyrec.data.fetch import KNOWN_DATASETS, fetch

    spec_str = str(spec)
    with bad_rows_policy(on_bad_rows):
        if spec_str in KNOWN_DATASETS:
            dataset = load_directory(fetch(spec_str, source=source), name=spec_str)
        elif Path(spec_str).exists():
            dataset = load_directory(Path(spec_str))
        else:
            known = ", ".join(KNOWN_DATASETS)
            raise DataError(f"{spec_str!r} is neither a known dataset ({known}) nor a directory")
    dataset = dataset.filter_min_rating(min_rating)
    if kcore:
        dataset = dataset.kcore(kcore)
    return dataset
