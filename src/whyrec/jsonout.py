"""Strict JSON for everything whyrec writes: no NaN or Infinity, which strict readers
(JavaScript's JSON.parse, jq, Go, orjson) reject. An undefined number is `null`."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def strict(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (and numpy scalars made plain)."""
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any, indent: int | None = None) -> str:
    """Strict JSON text (non-ASCII kept as is)."""
    return json.dumps(strict(value), indent=indent, ensure_ascii=False, allow_nan=False)
