"""One id map: external ids (users, items, attribute values) ↔ dense positions 0..n-1."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from whyrec.errors import DataError, NotFoundError


class Vocabulary(Mapping[Hashable, int]):
    """Ids in a fixed order and the position of each; a read-only mapping id → position.

    Built once from the ids in their order; duplicates are a data error, unless
    `duplicates="last"` says that a repeated id means its last position (for keys derived
    from labels, such as a value and a path prefix spelled alike). Look-ups are dict speed
    (`get` is the dict's own method), an unknown id is a `NotFoundError` that names the id,
    and `numbers` maps many ids at once with -1 for the unknown ones.
    """

    def __init__(
        self,
        ids: Sequence[Hashable] | np.ndarray,
        what: str = "id",
        duplicates: Literal["error", "last"] = "error",
    ) -> None:
        self.what = what
        self.ids = list(ids)
        self._index: dict[Hashable, int] = {key: pos for pos, key in enumerate(self.ids)}
        if len(self._index) != len(self.ids) and duplicates == "error":
            dupes = [str(i) for i, c in Counter(self.ids).items() if c > 1][:5]
            raise DataError(f"duplicate {what}s, e.g. {', '.join(dupes)}")
        self.get = self._index.get  # C-speed look-up on hot paths

    def __getitem__(self, key: Hashable) -> int:
        try:
            return self._index[key]
        except KeyError:
            raise NotFoundError(f"unknown {self.what} {key!r}") from None

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def id(self, position: int) -> Hashable:
        """The id at a position."""
        return self.ids[position]

    @cached_property
    def _lookup(self) -> pd.Index:
        return pd.Index(self.ids, dtype=object)

    def numbers(self, ids: Iterable[Hashable]) -> np.ndarray:
        """Positions of many ids, -1 where an id is unknown (one vectorized hash look-up)."""
        if not isinstance(ids, np.ndarray | pd.Series | pd.Index | list):
            ids = list(ids)
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        return self._lookup.get_indexer(pd.Index(ids, dtype=object)).astype(np.int64)
