"""Evidence behind a recommendation, kept as data.

For models whose score is a sum over history items (EASE, and later ItemKNN), the
contribution of each history item is exact: the shares below add up to the score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from whyrec.explain.attribution import shares_of
from whyrec.models.base import Recommender


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
        data = asdict(self)
        data.pop("position")
        return data


def history_contributions(
    model: Recommender,
    history: np.ndarray,
    items: np.ndarray,
    catalog,
    top: int = 3,
) -> list[list[HistoryContribution]] | None:
    """For each item, the `top` history items that raised its score most.

    Returns None when the model has no exact decomposition.
    """
    history = np.asarray(history, dtype=np.int64)
    if len(history) == 0:
        return [[] for _ in items]
    matrix = model.contributions(history, np.asarray(items, dtype=np.int64))
    if matrix is None:
        return None
    result = []
    for row in matrix.astype(np.float64):
        shares = shares_of(row)
        order = np.argsort(-row, kind="stable")[:top]
        result.append(
            [
                HistoryContribution(
                    position=int(history[j]),
                    item_id=catalog.item_ids[history[j]],
                    title=catalog.titles[history[j]],
                    contribution=float(row[j]),
                    share=float(shares[j]),
                )
                for j in order
                if row[j] > 0
            ]
        )
    return result
