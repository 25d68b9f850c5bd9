"""Evidence behind a recommendation, kept as data.

For models whose score is a sum over history items (EASE, ItemKNN, the text model), the
contribution of each history item is exact: the shares below add up to the score.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HistoryContribution:
    """How much one history item added to a recommended item's score.

    `share` is contribution / score when the score is positive (all shares of a score
    then sum to 1), else contribution / Σ|contributions|, so its sign always says
    whether the history item pushed the recommendation up or down. For models without
    exact contributions, `contribution` is the score drop when the item is left out
    (occlusion) and shares are of the total drop; `Explanation.history_method` says which.
    """

    position: int
    item_id: str
    title: str
    contribution: float
    share: float

    def to_dict(self) -> dict:
        return {
            "item_id": self.item_id,
            "title": self.title,
            "contribution": self.contribution,
            "share": self.share,
        }
