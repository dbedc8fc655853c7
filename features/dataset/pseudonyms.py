"""Keyed hashes of member ids: what logs, reports and the privacy audit hold instead of the ids themselves.

The key is `$COMMUNITY_ML_PSEUDONYM_KEY` (set it in production, from a secret store), else a random key created
once in `$COMMUNITY_ML_HOME/secrets/` (mode 600, git-ignored with the home). Keep it stable: pseudonyms made with
another key match nothing, and the list of forgotten members is kept as pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from features.common.home import StateHome
from features.common.settings import project_settings


def pseudonym(key: bytes, member_id: str) -> str:
    return hmac.new(key, member_id.encode(), hashlib.sha256).hexdigest()[:24]


def pseudonym_key(home: StateHome) -> bytes:
    """The key of member-id hashes: `$COMMUNITY_ML_PSEUDONYM_KEY`, else a random key kept in the state home."""
    configured = project_settings().pseudonym_key
    if configured:
        return configured.encode()
    path = home.root / "secrets" / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:  # created readable by the owner only from its first byte; a concurrent creator wins
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32).hex().encode())
    return path.read_bytes().strip()
