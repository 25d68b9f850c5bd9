"""Evidence behind a recommendation, kept as data.

For models whose score is a sum over history items (EASE, and later ItemKNN), the
contribution of each history item is exact: the shares below add up to the score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from whyrec.models.base import Recommender


@dataclass(frozen=True)
class HistoryContribution:
    """How much one history item added to a recommended item's score.

    `share` is contribution / score when the score is positive (all shares of a score
    then sum to 1), else contribution / Σ|contributions|, so its sign always says
    whether the history item pushed the recommendation up or down.
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


def _shares(contributions: np.ndarray) -> np.ndarray:
    total = float(contributions.sum())
    if total > 0:
        return contributions / total
    magnitude = float(np.abs(contributions).sum())
    return contributions / magnitude if magnitude > 0 else np.zeros_like(contributions)


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
        shares = _shares(row)
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
