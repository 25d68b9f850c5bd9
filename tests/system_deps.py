"""System programs some tests need (Chromium, PostgreSQL, Java): skipped where missing on
a developer's machine, a failure under CI (`CI` set, as `.ci/run` does), so a broken CI
image can never pass by skipping."""

from __future__ import annotations

import os

import pytest


def require(available: bool, what: str, install: str) -> None:
    """Skip (or, under CI, fail) the calling test or fixture unless `available`."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide {what} ({install})")
    pytest.skip(f"{what} is not installed ({install})")
