"""Generative recommendation with semantic item indices (see `model`)."""

from whyrec.models.generative.model import Generated, Generative

__all__ = ["Generated", "Generative"]
