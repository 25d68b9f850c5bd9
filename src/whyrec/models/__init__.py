"""Recommender models: one file a model, all on the common `Recommender` base."""

from whyrec.errors import WhyrecError
from whyrec.models.base import Recommender
from whyrec.models.bpr import BPR
from whyrec.models.ease import EASE
from whyrec.models.hybrid import Hybrid
from whyrec.models.ials import IALS
from whyrec.models.itemknn import ItemKNN
from whyrec.models.popularity import Popularity
from whyrec.models.relmf import RelMF
from whyrec.models.sasrec import SASRec, SASRecText
from whyrec.models.text import TextRecommender

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        Popularity,
        EASE,
        ItemKNN,
        IALS,
        BPR,
        RelMF,
        TextRecommender,
        SASRec,
        SASRecText,
        Hybrid,
    )
}

MODEL_ALIASES = {"pop": "popularity", "knn": "itemknn", "als": "ials", "rel-mf": "relmf"}
"""Short names accepted wherever a model is named."""


def model_class(name: str) -> type[Recommender]:
    """The model class registered under `name`."""
    try:
        key = name.strip().lower()
        return MODELS[MODEL_ALIASES.get(key, key)]
    except KeyError:
        raise WhyrecError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None


__all__ = [
    "BPR",
    "EASE",
    "IALS",
    "MODELS",
    "MODEL_ALIASES",
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
