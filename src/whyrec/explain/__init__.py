"""Explanations as data: evidence objects that renderers turn into text or JSON."""

from whyrec.explain.evidence import HistoryContribution, history_contributions

__all__ = ["HistoryContribution", "history_contributions"]
