"""Reading feedback back, for whoever folds it into models (see `Store.feedback`)."""

from __future__ import annotations

import pandas as pd

from whyrec.store.base import FeedbackEvent, Store

COLUMNS = ["id", "user_id", "item_id", "kind", "rating", "timestamp", "session_id", "source"]


def read_feedback(store: Store, after_id: int = 0, limit: int | None = None) -> list[FeedbackEvent]:
    """Events with id > `after_id`, oldest first; pass the last id seen to read only news."""
    return store.feedback(after_id=after_id, limit=limit)


def feedback_frame(store: Store, after_id: int = 0) -> pd.DataFrame:
    """Feedback as a frame in the canonical interactions columns (plus kind and provenance).

    Events sent for an anonymous chat session carry user id "session:<id>", so they
    still group by person.
    """
    rows = [
        {
            "id": e.id,
            "user_id": e.user_id if e.user_id is not None else f"session:{e.session_id}",
            "item_id": e.item_id,
            "kind": e.kind,
            "rating": e.rating,
            "timestamp": e.timestamp,
            "session_id": e.session_id,
            "source": e.source,
        }
        for e in read_feedback(store, after_id)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)
