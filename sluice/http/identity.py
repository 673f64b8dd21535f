"""Who is calling, as far as a coding agent tells us: client, session and end user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from sluice.engine.context import RequestContext

# Claude Code, generic, and Codex's (0.171 sends `session-id`: tests/fixtures/codex/FINDINGS.md).
SESSION_HEADERS = ("x-claude-code-session-id", "x-session-id", "session_id", "session-id")


def fill_caller(ctx: RequestContext, headers: Mapping[str, str], doc: dict[str, Any]) -> None:
    ctx.client = headers.get("user-agent", "")
    for name in SESSION_HEADERS:
        if headers.get(name):
            ctx.session_id = headers[name][:200]
            break
    metadata = doc.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else doc.get("user")
    if not isinstance(user, str) or not user:
        return
    ctx.user_id = user[:300]
    if ctx.session_id is None:
        ctx.session_id = _session_in_user_id(user)


def _session_in_user_id(user: str) -> str | None:
    # Claude Code sends either a JSON object ({"device_id": ..., "session_id": ...}) or the older
    # "user_<hash>_account_<uuid>_session_<uuid>" string.
    if user.startswith("{"):
        try:
            parsed = orjson.loads(user)
        except orjson.JSONDecodeError:
            return None
        session = parsed.get("session_id") if isinstance(parsed, dict) else None
        return str(session)[:200] if session else None
    _, sep, session = user.rpartition("_session_")
    return session[:200] if sep and session else None
