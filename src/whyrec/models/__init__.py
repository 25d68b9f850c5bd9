"""Recommender models: one file a model, all on the common `Recommender` base.

The registry imports a model's module only when the model is asked for, so loading an
EASE bundle never pays for importing torch (SASRec, the text model) or implicit.
"""

from __future__ import annotations

import importlib

from whyrec.models.base import Recommender
from whyrec.models.registry import CLASS_LOCATIONS, MODEL_ALIASES, MODELS, model_class


def __getattr__(attribute: str):
    """`from whyrec.models import EASE` keeps working, importing only that model."""
    if attribute in CLASS_LOCATIONS:
        return getattr(importlib.import_module(CLASS_LOCATIONS[attribute]), attribute)
    raise AttributeError(f"module 'whyrec.models' has no attribute {attribute!r}")


__all__ = [
    "BPR",
    "EASE",
    "IALS",
    "MODELS",
    "MODEL_ALIASES",
    "SANSA",
    "Generative",
    "Hybrid",
    "ItemKNN",
    "Popularity",
    "Recommender",
    "RelMF",
    "SASRec",
    "SASRecText",
    "TextRecommender",
    "model_class",
]
