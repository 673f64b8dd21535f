"""Managed settings for signed-in agents (`GET /managed/settings`): the access profile's
`managed_settings`, in the wrapper and with the checksum Claude Code computes itself
(docs/design/claude-gateway-protocol.md, "Managed settings"), so its hourly poll is a 304."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson

# A fixed namespace: a profile's document id is the same on every replica and across restarts.
_NAMESPACE = uuid.UUID("6f1d2a8e-3c4b-4d5e-9f60-7a8b9c0d1e2f")


def canonical(doc: Any) -> bytes:
    """JSON with keys sorted at every level and no whitespace, non-ASCII as is (what the client's
    JSON.stringify of a key-sorted copy gives)."""
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def checksum(settings: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical(settings)).hexdigest()


def document(profile_id: str, settings: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(the response body, its checksum): the wrapper the client requires around the settings."""
    digest = checksum(settings)
    return {"uuid": str(uuid.uuid5(_NAMESPACE, profile_id)), "checksum": digest, "settings": settings}, digest


def matches(if_none_match: str | None, digest: str) -> bool:
    """RFC 9110 13.1.2 weak comparison over the listed tags; `*` is a probe, answered in full."""
    if not if_none_match or if_none_match.strip() == "*":
        return False
    tags = {t.strip().removeprefix("W/").strip('"') for t in if_none_match.split(",")}
    return digest in tags
