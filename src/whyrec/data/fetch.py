"""Obtain public datasets: from a local copy when one is given, else from GroupLens.

A download is verified by SHA-256 before it is unpacked, and unpacking goes to a
temporary folder that is renamed into place only when complete, so an interrupted or
corrupt fetch never leaves a half-written dataset in the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from whyrec.errors import FetchError

GROUPLENS = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    url: str
    sha256: str
    size: int
    marker: str
    """A file that must exist in the unpacked folder."""


KNOWN_DATASETS: dict[str, RemoteDataset] = {
    d.name: d
    for d in [
        RemoteDataset(
            "ml-latest-small",
            f"{GROUPLENS}/ml-latest-small.zip",
            "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
            978_202,
            "ratings.csv",
        ),
        RemoteDataset(
            "ml-100k",
            f"{GROUPLENS}/ml-100k.zip",
            "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
            4_924_029,
            "u.data",
        ),
        RemoteDataset(
            "ml-1m",
            f"{GROUPLENS}/ml-1m.zip",
            "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            5_917_549,
            "ratings.dat",
        ),
        RemoteDataset(
            "ml-25m",
            f"{GROUPLENS}/ml-25m.zip",
            "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            261_978_986,
            "ratings.csv",
        ),
    ]
}


def cache_dir() -> Path:
    """Where fetched datasets live: $WHYREC_CACHE_DIR, else ~/.cache/whyrec/datasets."""
    configured = os.environ.get("WHYREC_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "whyrec"
    return base / "datasets"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _spec(name: str) -> RemoteDataset:
    try:
        return KNOWN_DATASETS[name]
    except KeyError:
        known = ", ".join(KNOWN_DATASETS)
        raise FetchError(f"unknown dataset {name!r}; known: {known}") from None


def _local_source(source: Path | None) -> Path | None:
    if source is not None:
        if not Path(source).is_dir():
            raise FetchError(f"--source {source} is not a directory")
        return Path(source)
    env = os.environ.get("WHYREC_DATA_DIR")
    return Path(env) if env else None


def fetch(name: str, source: Path | None = None, refresh: bool = False) -> Path:
    """Return a folder holding the unpacked dataset `name`.

    Looks, in order, for an unpacked folder in the local source (used in place, no
    copy), a verified zip in the local source, the cache, and finally GroupLens.
    """
    spec = _spec(name)
    local = _local_source(source)
    if local is not None and (local / name / spec.marker).exists():
        return local / name
    target = cache_dir() / name
    if refresh and target.exists():
        shutil.rmtree(target)
    if (target / spec.marker).exists():
        return target
    if local is not None and (local / f"{name}.zip").exists():
        return _unpack_verified(local / f"{name}.zip", spec, target)
    return _download_and_unpack(spec, target)


def _download_and_unpack(spec: RemoteDataset, target: Path) -> Path:
    from whyrec.console import download_progress, note

    target.parent.mkdir(parents=True, exist_ok=True)
    note(f"downloading {spec.url}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.name}-", suffix=".zip.part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or spec.size)
            with download_progress() as progress:
                task = progress.add_task(spec.name, total=total)
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    progress.advance(task, len(block))
        return _unpack_verified(tmp, spec, target)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise FetchError(
            f"cannot download {spec.url}: {exc}; offline, set WHYREC_DATA_DIR to a folder "
            f"holding {spec.name}.zip or the unpacked {spec.name}/"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _unpack_verified(archive: Path, spec: RemoteDataset, target: Path) -> Path:
    """Check the archive's SHA-256, unpack into a temporary folder, then rename into place."""
    actual = sha256_of(archive)
    if actual != spec.sha256:
        raise FetchError(
            f"{archive} fails verification: SHA-256 {actual[:16]}… differs from the published "
            f"{spec.sha256[:16]}…; the file is corrupt or not {spec.name}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=target.parent))
    try:
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(staging)
        except (zipfile.BadZipFile, OSError) as exc:
            raise FetchError(f"cannot unpack {archive}: {exc}") from None
        unpacked = staging / spec.name
        if not (unpacked / spec.marker).exists():
            raise FetchError(f"{archive} does not contain {spec.name}/{spec.marker}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
