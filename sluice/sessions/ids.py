"""A caller's session id in the one form caps, runaway detection and stops compare it in. Its own
module, under everything that uses it (governance's limits among them), importing only the stdlib."""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

MAX_SESSION_ID = 200
# The session a request that names none counts in (per key), for caps, detectors and stops.
NO_SESSION = "(no session)"


def session_key(session_id: str | None) -> str | None:
    """The one form a caller's session id is compared in (stops, caps, runaway detection)."""
    if session_id is None:
        return None
    text = unquote(session_id) if "%" in session_id else session_id
    text = unicodedata.normalize("NFKC", text).strip().casefold()
    return text[:MAX_SESSION_ID] or None
