"""Explanations as data: evidence objects that renderers turn into text or JSON.

`Explainer` builds an `Explanation` (history attribution, attribute paths, constraint
checks, co-interaction counts, confidence, why-not); `render` phrases it;
`fidelity.explanation_fidelity` measures whether the cited evidence really matters.
"""

from whyrec.explain.attribution import EXACT, OCCLUSION, Attribution, attribute
from whyrec.explain.evidence import HistoryContribution
from whyrec.explain.explainer import Explainer
from whyrec.explain.explanation import (
    CollaborativeEvidence,
    Confidence,
    ConstraintCheck,
    Explanation,
    MissingValue,
    PathEvidence,
    SharedValue,
    WhyNot,
)
from whyrec.explain.fidelity import explanation_fidelity

__all__ = [
    "EXACT",
    "OCCLUSION",
    "Attribution",
    "CollaborativeEvidence",
    "Confidence",
    "ConstraintCheck",
    "Explainer",
    "Explanation",
    "HistoryContribution",
    "MissingValue",
    "PathEvidence",
    "SharedValue",
    "WhyNot",
    "attribute",
    "explanation_fidelity",
]
