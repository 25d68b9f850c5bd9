"""A trained bundle on disk: model + catalog + training interactions + config.

`recommend`, `chat`, `serve` and `simulate` all load the same bundle. It is written to a
temporary folder and renamed into place, so a crash never leaves half a bundle, and an
existing folder that is not a bundle is never overwritten.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from whyrec import __version__
from whyrec.data.catalog import Catalog
from whyrec.data.dataset import Dataset
from whyrec.errors import BundleError
from whyrec.models.base import Recommender

BUNDLE_FORMAT = 1
"""Bumped when the bundle layout changes incompatibly; loading another format fails clearly."""


def check_bundle_target(directory: Path) -> None:
    """Refuse, before any training, to write a bundle over a folder that is not one."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BundleError(f"{directory} is a file; choose another --out")
    if directory.exists() and any(directory.iterdir()) and not (directory / "bundle.json").exists():
        raise BundleError(f"{directory} exists and is not a whyrec bundle; choose another --out")


@dataclass
class Bundle:
    model: Recommender
    train: Dataset
    info: dict = field(default_factory=dict)
    test: Dataset | None = None
    """Held-out interactions when trained with a holdout (targets for simulated users)."""
    path: Path | None = None
    """The folder it was loaded from (caches such as the ANN index live there)."""

    @property
    def catalog(self) -> Catalog:
        return self.train.catalog

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        check_bundle_target(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            self.model.save(staging / "model")
            self.catalog.save(staging / "catalog.json")
            self.train.interactions.to_parquet(staging / "interactions.parquet", index=False)
            if self.test is not None:
                self.test.interactions.to_parquet(staging / "test.parquet", index=False)
            meta = {
                "format": BUNDLE_FORMAT,
                "whyrec_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "model": self.model.name,
                "dataset": self.train.name,
                "has_timestamps": self.train.has_timestamps,
                "user_ids": [str(u) for u in self.train.user_ids],
                **self.info,
            }
            (staging / "bundle.json").write_text(json.dumps(meta, indent=2))
            if directory.exists():
                shutil.rmtree(directory)
            staging.rename(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: Path) -> Bundle:
        directory = Path(directory)
        meta_path = directory / "bundle.json"
        if not meta_path.exists():
            raise BundleError(
                f"{directory} is not a whyrec bundle (no bundle.json); train one first"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{meta_path} is corrupt: {exc}") from None
        except OSError as exc:
            raise BundleError(f"cannot read {meta_path}: {exc.strerror or exc}") from None
        if not isinstance(meta, dict):
            raise BundleError(f"{meta_path} is corrupt: a JSON object was expected")
        if meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(
                f"{directory} has bundle format {meta.get('format')} (whyrec "
                f"{meta.get('whyrec_version', '?')}); this whyrec {__version__} reads format "
                f"{BUNDLE_FORMAT}: retrain it"
            )
        with _reading(str(directory / "catalog.json")):
            catalog = Catalog.load(directory / "catalog.json")
        with _reading("the bundle's interactions"):
            frame = pd.read_parquet(directory / "interactions.parquet")
        train = Dataset(
            frame,
            catalog,
            name=meta.get("dataset", "data"),
            has_timestamps=meta.get("has_timestamps", True),
            user_ids=meta.get("user_ids"),
        )
        test = None
        if (directory / "test.parquet").exists():
            test = Dataset(
                pd.read_parquet(directory / "test.parquet"),
                catalog,
                name=train.name,
                has_timestamps=train.has_timestamps,
                user_ids=train.user_ids,
            )
        with _reading("the bundle's model"):
            model = Recommender.load(directory / "model")
        if model.n_items_ != len(catalog):
            raise BundleError("the bundle's model and catalog disagree on the number of items")
        info = {k: v for k, v in meta.items() if k != "user_ids"}
        return cls(model=model, train=train, info=info, test=test, path=directory)


@contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turn a damaged or unreadable part of a bundle into one `BundleError` naming it."""
    try:
        yield
    except BundleError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"cannot read {what}: {exc}") from None
