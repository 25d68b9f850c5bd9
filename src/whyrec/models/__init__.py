"""Recommender models: one file a model, all on the common `Recommender` base."""

from whyrec.errors import WhyrecError
from whyrec.models.base import Recommender
from whyrec.models.ease import EASE
from whyrec.models.hybrid import Hybrid
from whyrec.models.popularity import Popularity
from whyrec.models.sasrec import SASRec, SASRecText
from whyrec.models.text import TextRecommender

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (Popularity, EASE, TextRecommender, SASRec, SASRecText, Hybrid)
}


def model_class(name: str) -> type[Recommender]:
    """The model class registered under `name`."""
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise WhyrecError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None


__all__ = [
    "EASE",
    "MODELS",
    "Hybrid",
    "Popularity",
    "Recommender",
    "SASRec",
    "SASRecText",
    "TextRecommender",
    "model_class",
]
