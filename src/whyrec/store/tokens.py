"""Session tokens are kept as digests: a leaked database opens no session.

A token is 24 random bytes (urlsafe), so one SHA-256 pass is enough; a slow password
hash would only add latency to every chat request.
"""

from __future__ import annotations

import hashlib

DIGEST_PREFIX = "sha256:"


def token_digest(token: str) -> str:
    """What the store keeps for a session token."""
    return DIGEST_PREFIX + hashlib.sha256(token.encode()).hexdigest()
