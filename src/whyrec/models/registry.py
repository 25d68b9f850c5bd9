"""Model name → class, without importing any model until it is asked for.

Adding a model touches two places: its own file under `whyrec/models/` and one line in
`_LOCATIONS` below. Loading an EASE bundle never pays for importing torch or implicit.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from whyrec.errors import WhyrecError

ModelClass = type
"""A `whyrec.models.base.Recommender` subclass (named loosely here: base.py loads models
through this registry, so importing base, even for typing, would close an import loop)."""

_LOCATIONS: dict[str, tuple[str, str]] = {
    "popularity": ("whyrec.models.popularity", "Popularity"),
    "ease": ("whyrec.models.ease", "EASE"),
    "sansa": ("whyrec.models.sansa", "SANSA"),
    "itemknn": ("whyrec.models.itemknn", "ItemKNN"),
    "ials": ("whyrec.models.ials", "IALS"),
    "bpr": ("whyrec.models.bpr", "BPR"),
    "relmf": ("whyrec.models.relmf", "RelMF"),
    "text": ("whyrec.models.text", "TextRecommender"),
    "sasrec": ("whyrec.models.sasrec", "SASRec"),
    "sasrec-text": ("whyrec.models.sasrec", "SASRecText"),
    "hybrid": ("whyrec.models.hybrid", "Hybrid"),
    "generative": ("whyrec.models.generative", "Generative"),
    "generative-llm": ("whyrec.models.generative.llm_backbone", "GenerativeLLM"),
}
CLASS_LOCATIONS = {cls: module for module, cls in _LOCATIONS.values()}


class _Registry(Mapping[str, ModelClass]):
    """Model name → class, importing each model's module on first use."""

    def __getitem__(self, name: str) -> ModelClass:
        module, cls = _LOCATIONS[name]
        return getattr(importlib.import_module(module), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(_LOCATIONS)

    def __len__(self) -> int:
        return len(_LOCATIONS)


MODELS: Mapping[str, ModelClass] = _Registry()

MODEL_ALIASES = {"pop": "popularity", "knn": "itemknn", "als": "ials", "rel-mf": "relmf"}
"""Short names accepted wherever a model is named."""


def model_class(name: str) -> ModelClass:
    """The model class registered under `name`."""
    key = name.strip().lower()
    key = MODEL_ALIASES.get(key, key)
    if key not in _LOCATIONS:
        raise WhyrecError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    return MODELS[key]
