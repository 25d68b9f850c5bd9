"""Seeded synthetic interaction logs with the shape of real ones, for measuring scale.

Public logs stop at tens of millions of interactions; to see how whyrec grows to 1e8 we
generate data whose statistics resemble real catalogues, in the canonical format:

- item popularity follows a power law (Zipf with exponent `popularity_exponent` over a
  random permutation of the items), user activity too (Pareto with `activity_exponent`),
  so a few heavy users and blockbuster items dominate, as in MovieLens or Netflix;
- every user and item has a latent vector; a user picks items with probability
  ∝ popularity · exp(`affinity` · ⟨user, item⟩), so collaborative signal is there to learn;
- attributes are read off the item vectors (genres are the item's nearest genre
  directions, the decade follows one latent axis), so attributes carry the same signal as
  the interactions and the text model has something to find;
- timestamps run forward per user from a random start, and ratings follow the affinity.

Generation runs a block of users at a time (item vectors, O(items × dim), are the only
global state), so 1e8 interactions need memory for one block, never users × items.
Sampling without replacement inside a user is done by drawing candidates from the
popularity distribution and keeping each user's best Gumbel-perturbed keys; the rare user
whose candidates run short is topped up in a further round.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from whyrec.errors import DataError

GENRES = (
    "Action",
    "Comedy",
    "Drama",
    "Horror",
    "Romance",
    "Sci-Fi",
    "Documentary",
    "Animation",
    "Thriller",
    "Fantasy",
    "Crime",
    "Musical",
)
MOODS = ("dark", "light-hearted", "tense", "uplifting", "quirky", "epic")
_NOUNS = ("Story", "Night", "Road", "House", "Signal", "Garden", "Empire", "Echo", "Voyage")
_START = 1_300_000_000  # 2011-03-13, first possible timestamp
_SPAN = 8 * 365 * 86_400  # eight years of activity
OVERSAMPLE = 5
"""Popularity-drawn candidates per wanted item; the taste picks among them (more: sharper)."""
SHAPES = ("movies", "lastfm", "yelp", "fields")
LEAVES_PER_CATEGORY = 20
"""Leaf categories under each top-level one in the yelp shape (30 × 20 = 600, as Yelp)."""
CSV_LIMIT = 1_000_000
"""Above this many interactions `format="auto"` writes Parquet instead of CSV."""


class SynthConfig(BaseModel):
    """Shape of a synthetic dataset; the same config and seed give the same files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: int = Field(ge=1, description="Number of users.")
    items: int = Field(ge=2, description="Number of catalogue items.")
    interactions: int = Field(ge=1, description="Number of (distinct) user-item interactions.")
    seed: int = Field(0, description="Seed of every random draw.")
    dim: int = Field(16, ge=2, description="Dimensions of the latent taste space.")
    popularity_exponent: float = Field(0.9, ge=0, description="Zipf exponent of item popularity.")
    activity_exponent: float = Field(
        1.5, gt=0, description="Pareto tail index of user activity (smaller: heavier users)."
    )
    affinity: float = Field(
        2.5, ge=0, description="How strongly taste (vs. popularity) steers choices."
    )
    block_users: int = Field(20_000, ge=1, description="Users generated per block (memory).")
    shape: str = Field(
        "movies",
        description="Attribute fields: movies (genres, decade, mood), lastfm (one "
        "multi-valued field), yelp (a two-level category path), fields (several "
        "single-valued fields, one numeric).",
    )
    values: int = Field(
        30, ge=2, description="Values of the lastfm field; top-level categories for yelp."
    )

    @model_validator(mode="after")
    def _fits(self) -> SynthConfig:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose from {', '.join(SHAPES)}")
        most = self.users * max_history(self.items)
        if self.interactions < self.users:
            raise ValueError(
                f"{self.interactions} interactions cannot give each of {self.users} users one"
            )
        if self.interactions > most:
            raise ValueError(
                f"{self.interactions} interactions do not fit {self.users} users × "
                f"{max_history(self.items)} items each; add users or items"
            )
        return self


def max_history(n_items: int) -> int:
    """Longest history a user may get: half the catalogue keeps sampling cheap and realistic."""
    return max(1, n_items // 2)


@dataclass
class Latents:
    """The global state of a synthetic world: item vectors, popularity and genre axes."""

    item_vectors: np.ndarray
    popularity: np.ndarray
    genre_axes: np.ndarray


def _latents(config: SynthConfig, rng: np.random.Generator) -> Latents:
    """Items cluster around genre directions (plus noise), as real embedding spaces do."""
    axes = rng.standard_normal((len(GENRES), config.dim)).astype(np.float32)
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    genre_weights = 1.0 / np.arange(1, len(GENRES) + 1) ** 0.7
    primary = rng.choice(len(GENRES), config.items, p=genre_weights / genre_weights.sum())
    noise = rng.standard_normal((config.items, config.dim)).astype(np.float32)
    vectors = 0.8 * axes[primary] + 0.6 * noise / np.sqrt(config.dim)
    ranks = rng.permutation(config.items) + 1
    popularity = ranks.astype(np.float64) ** -config.popularity_exponent
    return Latents(vectors.astype(np.float32), popularity / popularity.sum(), axes)


def _user_tastes(n: int, latents: Latents, rng: np.random.Generator) -> np.ndarray:
    """Each user likes a mixture of one to three genres, plus a personal direction."""
    dim = latents.item_vectors.shape[1]
    n_genres = len(latents.genre_axes)
    liked = rng.integers(0, n_genres, (n, 3))
    weights = rng.dirichlet(np.ones(3) * 0.7, n)
    weights[rng.random(n) < 0.4, 2] = 0.0  # many users have fewer favourite genres
    weights /= weights.sum(axis=1, keepdims=True)
    mixture = np.einsum("uk,ukd->ud", weights, latents.genre_axes[liked])
    return (2.0 * mixture + rng.standard_normal((n, dim)) / np.sqrt(dim)).astype(np.float32)


def user_activity(config: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Interactions per user: Pareto-shaped, each ≥ 1, capped, summing exactly to the total."""
    cap = max_history(config.items)
    weights = rng.pareto(config.activity_exponent, config.users) + 1.0
    extra = config.interactions - config.users
    counts = np.ones(config.users, dtype=np.int64)
    while extra > 0:  # hand out the rest by weight; users at the cap drop out of the draw
        room = cap - counts
        open_weights = np.where(room > 0, weights, 0.0)
        share = rng.multinomial(extra, open_weights / open_weights.sum())
        granted = np.minimum(share, room)
        counts += granted
        extra -= int(granted.sum())
    return counts


def _pick_distinct(
    users: np.ndarray,
    wanted: np.ndarray,
    user_vectors: np.ndarray,
    latents: Latents,
    affinity: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, affinity score) rows: `wanted[u]` distinct items for each user row.

    Candidates come from the popularity distribution; each user keeps the distinct ones
    with the highest Gumbel-perturbed log-affinity (sampling ∝ popularity · e^affinity).
    """
    n_items = len(latents.popularity)
    cumulative = np.cumsum(latents.popularity)
    kept_users, kept_items, kept_scores = [], [], []
    need = wanted.copy()
    for _round in range(12):
        active = np.flatnonzero(need > 0)
        if len(active) == 0:
            break
        draws = np.minimum(need[active] * (OVERSAMPLE + 2 * _round) + 8, 4 * n_items)
        cand_user = np.repeat(active, draws)
        cand_item = np.searchsorted(cumulative, rng.random(len(cand_user)) * cumulative[-1])
        cand_item = np.minimum(cand_item, n_items - 1)
        if _round:  # later rounds: also draw uniformly, so the long tail can be reached
            uniform = rng.random(len(cand_user)) < 0.5
            cand_item[uniform] = rng.integers(0, n_items, int(uniform.sum()))
        taste = np.einsum(
            "ij,ij->i", user_vectors[cand_user], latents.item_vectors[cand_item], dtype=np.float32
        )
        keys = affinity * taste + rng.gumbel(size=len(cand_user)).astype(np.float32)
        if kept_users:  # never repeat an item already given to the user
            taken = np.concatenate(kept_users) * n_items + np.concatenate(kept_items)
            fresh = ~np.isin(cand_user.astype(np.int64) * n_items + cand_item, taken)
            cand_user, cand_item, keys, taste = (
                cand_user[fresh],
                cand_item[fresh],
                keys[fresh],
                taste[fresh],
            )
        order = np.lexsort((-keys, cand_item, cand_user))
        cand_user, cand_item, keys, taste = (
            cand_user[order],
            cand_item[order],
            keys[order],
            taste[order],
        )
        first = np.ones(len(cand_user), dtype=bool)
        first[1:] = (cand_user[1:] != cand_user[:-1]) | (cand_item[1:] != cand_item[:-1])
        cand_user, cand_item, keys, taste = (
            cand_user[first],
            cand_item[first],
            keys[first],
            taste[first],
        )
        order = np.lexsort((-keys, cand_user))
        cand_user, cand_item, taste = cand_user[order], cand_item[order], taste[order]
        starts = np.searchsorted(cand_user, cand_user, side="left")
        rank = np.arange(len(cand_user)) - starts
        keep = rank < need[cand_user]
        kept_users.append(cand_user[keep])
        kept_items.append(cand_item[keep])
        kept_scores.append(taste[keep])
        need -= np.bincount(cand_user[keep], minlength=len(need))
    if need.any():  # pragma: no cover - guarded by max_history; kept as a loud failure
        raise DataError("synthetic sampling could not find enough distinct items")
    return (
        users[np.concatenate(kept_users)],
        np.concatenate(kept_items),
        np.concatenate(kept_scores),
    )


def interaction_blocks(config: SynthConfig) -> Iterator[pd.DataFrame]:
    """The interactions as canonical frames, one block of users at a time."""
    rng = np.random.default_rng(config.seed)
    latents = _latents(config, rng)
    counts = user_activity(config, rng)
    for start in range(0, config.users, config.block_users):
        stop = min(start + config.block_users, config.users)
        block_rng = np.random.default_rng([config.seed, start])
        users = np.arange(start, stop)
        tastes = _user_tastes(len(users), latents, block_rng)
        rows, items, taste = _pick_distinct(
            users, counts[start:stop], tastes, latents, config.affinity, block_rng
        )
        yield _block_frame(rows, items, taste, counts[start:stop], start, block_rng)


def _block_frame(
    users: np.ndarray,
    items: np.ndarray,
    taste: np.ndarray,
    counts: np.ndarray,
    first_user: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Add timestamps (per-user forward in time) and ratings (from taste) to a block."""
    order = np.argsort(users, kind="stable")
    users, items, taste = users[order], items[order], taste[order]
    local = users - first_user
    begin = rng.integers(_START, _START + _SPAN // 2, len(counts))
    span = rng.uniform(0.05, 1.0, len(counts)) * (_START + _SPAN - begin)
    gaps = rng.exponential(1.0, len(users))
    # cumulative gap within each user, scaled so the user's last event ends within the span
    totals = np.bincount(local, weights=gaps, minlength=len(counts))
    running = np.cumsum(gaps)
    offsets = np.concatenate([[0.0], np.cumsum(totals)[:-1]])
    fraction = (running - offsets[local]) / np.maximum(totals[local], 1e-9)
    times = begin[local] + (fraction * span[local]).astype(np.int64)
    ratings = np.clip(np.round(3.0 + 0.6 * taste + rng.normal(0, 0.7, len(taste))), 1, 5)
    return pd.DataFrame(
        {
            "user_id": users + 1,
            "item_id": items + 1,
            "rating": ratings.astype(np.float32),
            "timestamp": times.astype(np.int64),
        }
    )


def item_table(config: SynthConfig) -> pd.DataFrame:
    """The catalogue: titles, years, genres and mood derived from the item vectors."""
    rng = np.random.default_rng(config.seed)
    latents = _latents(config, rng)
    vectors = latents.item_vectors / np.linalg.norm(latents.item_vectors, axis=1, keepdims=True)
    aff = vectors @ latents.genre_axes.T + rng.normal(0, 0.15, (config.items, len(GENRES)))
    order = np.argsort(-aff, axis=1)
    n_genres = 1 + (aff[np.arange(config.items), order[:, 1]] > 0.35).astype(int)
    n_genres += (n_genres == 2) & (aff[np.arange(config.items), order[:, 2]] > 0.45)
    genres = ["|".join(GENRES[g] for g in order[i, : n_genres[i]]) for i in range(config.items)]
    # the first latent axis runs from old to new, so the decade carries taste too
    years = np.clip(
        np.round(
            1995 + 14 * vectors[:, 0] * math.sqrt(config.dim) / 2 + rng.normal(0, 6, config.items)
        ),
        1930,
        2024,
    ).astype(int)
    mood = np.array(MOODS)[np.argmax(vectors[:, 1:7], axis=1) % len(MOODS)]
    nouns = np.array(_NOUNS)[rng.integers(0, len(_NOUNS), config.items)]
    first = [g.split("|")[0] for g in genres]
    titles = [f"{first[i]} {nouns[i]} {i + 1} ({years[i]})" for i in range(config.items)]
    descriptions = [
        f"{'An' if mood[i][0] in 'aeiou' else 'A'} {mood[i]} "
        f"{genres[i].replace('|', ' and ').lower()} title from {years[i]}."
        for i in range(config.items)
    ]
    table = pd.DataFrame(
        {
            "item_id": np.arange(1, config.items + 1),
            "title": titles,
            "year": years,
            "description": descriptions,
        }
    )
    if config.shape == "movies":
        table["genres"] = genres
        table["decade"] = [f"{y // 10 * 10}s" for y in years]
        table["mood"] = mood
    else:
        table = table.drop(columns=["year"])
        table["description"] = [f"Item {i + 1}." for i in range(config.items)]
        table["title"] = [f"{nouns[i]} {i + 1}" for i in range(config.items)]
        shape_rng = np.random.default_rng([config.seed, 7])
        for name, column in _shape_fields(config, vectors, shape_rng).items():
            table[name] = column
    return table


def _words(count: int, rng: np.random.Generator, used: set[str]) -> list[str]:
    """Distinct pronounceable names ("Kalomi"), so language-mode users can say them."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    out: list[str] = []
    while len(out) < count:
        word = "".join(rng.choice(syllables, int(rng.integers(2, 4)))).capitalize()
        if word.lower() not in used:
            used.add(word.lower())
            out.append(word)
    return out


def _affinity(vectors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Items × `count` attribute directions, noisy: attributes follow taste, loosely."""
    axes = rng.standard_normal((count, vectors.shape[1]))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return vectors @ axes.T + rng.normal(0, 0.25, (len(vectors), count))


def _shape_fields(
    config: SynthConfig, vectors: np.ndarray, rng: np.random.Generator
) -> dict[str, list[str]]:
    """The attribute columns of the lastfm, yelp and fields shapes."""
    n, used = len(vectors), set()
    if config.shape == "lastfm":
        names = _words(config.values, rng, used)
        scores = _affinity(vectors, config.values, rng)
        per_item = np.clip(rng.poisson(2.5, n) + 1, 1, config.values)
        order = np.argsort(-scores, axis=1)
        return {"tag": ["|".join(names[j] for j in order[i, : per_item[i]]) for i in range(n)]}
    if config.shape == "yelp":
        tops = _words(config.values, rng, used)
        leaves = [_words(LEAVES_PER_CATEGORY, rng, used) for _ in tops]
        top_scores = _affinity(vectors, config.values, rng)
        leaf_scores = _affinity(vectors, config.values * LEAVES_PER_CATEGORY, rng)
        leaf_scores = leaf_scores.reshape(n, config.values, LEAVES_PER_CATEGORY)
        per_item = np.clip(rng.poisson(1.0, n) + 1, 1, 4)
        cells = []
        for i in range(n):
            paths = []
            for top in np.argsort(-top_scores[i])[: per_item[i]]:
                leaf = int(np.argmax(leaf_scores[i, top]))
                paths.append(f"{tops[top]}>{leaves[top][leaf]}")
            cells.append("|".join(paths))
        return {"categories": cells}
    sizes = {"kind": 12, "style": 8, "origin": 20}
    out = {}
    for name, size in sizes.items():
        names = _words(size, rng, used)
        out[name] = [names[j] for j in np.argmax(_affinity(vectors, size, rng), axis=1)]
    price = _affinity(vectors, 1, rng)[:, 0]
    out["price"] = [str(int(v)) for v in np.clip(np.round(50 + 40 * price), 1, 200)]
    return out


_INTERACTION_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("rating", pa.float32()),
        ("timestamp", pa.int64()),
    ]
)


def write_synthetic(
    config: SynthConfig,
    out_dir: Path,
    file_format: str = "auto",
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write interactions and items in the canonical format; returns the two paths.

    `file_format` is "csv", "parquet" or "auto" (Parquet above `CSV_LIMIT` interactions).
    Each block is appended as it is made; `progress` is told how many rows were written.
    A folder that already holds a dataset is only replaced with `overwrite`.
    """
    if file_format not in {"auto", "csv", "parquet"}:
        raise DataError(f"unknown format {file_format!r}: use auto, csv or parquet")
    if file_format == "auto":
        file_format = "parquet" if config.interactions > CSV_LIMIT else "csv"
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} exists and is not a directory")
    existing = [
        out_dir / name
        for name in ("interactions.csv", "interactions.parquet", "items.csv", "items.parquet")
        if (out_dir / name).exists()
    ]
    if existing and not overwrite:
        raise DataError(
            f"{out_dir} already holds {existing[0].name}; choose another --out or pass --overwrite"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in existing:
        stale.unlink()
    inter_path = out_dir / f"interactions.{file_format}"
    items_path = out_dir / f"items.{file_format}"
    items = item_table(config)
    if file_format == "csv":
        items.to_csv(items_path, index=False)
        for number, block in enumerate(interaction_blocks(config)):
            block.to_csv(inter_path, mode="a", header=number == 0, index=False)
            if progress:
                progress(len(block))
    else:
        items.to_parquet(items_path, index=False)
        with pq.ParquetWriter(inter_path, _INTERACTION_SCHEMA) as writer:
            for block in interaction_blocks(config):
                writer.write_table(
                    pa.Table.from_pandas(block, schema=_INTERACTION_SCHEMA, preserve_index=False)
                )
                if progress:
                    progress(len(block))
    return {"interactions": inter_path, "items": items_path}


def default_shape(interactions: int) -> tuple[int, int]:
    """(users, items) for a given number of interactions, as the scale benchmark uses them.

    Users grow linearly (50 interactions each on average, like MovieLens' median user),
    the catalogue sub-linearly (≈ 3·K^0.5, so 1e5 → 950 items and 1e8 → 30,000).
    """
    users = max(1, interactions // 50)
    items = max(16, round(3 * math.sqrt(interactions)))
    return users, items
