"""Who is calling, as far as a coding agent tells us: client, session, end user, and where it works
(repository, branch, working directory).

What each client sends was watched on the real, pinned CLIs (tests/fixtures/*/FINDINGS.md and
docs/sessions.md): Claude Code sends `X-Claude-Code-Session-Id` (the same id as inside
`metadata.user_id`), Codex `session-id` (with `thread-id` and `x-client-request-id`, the same
uuid), Gemini CLI nothing, so it and anything else name their session with `x-sluice-session`. The `x-sluice-repo`,
`x-sluice-branch` and `x-sluice-cwd` headers are set by `sluice connect` through each agent's
custom-header setting.

Every value here comes from the caller: each is cut to a length the request log stores and loses
control characters (a header value cannot hold a newline, but a body field such as
`metadata.user_id` can), so a log line, a CSV cell or a console page shows what was sent, never
something that rewrites them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from sluice.engine.context import RequestContext

# The first one sent names the session. Claude Code, ours, the generic one, Codex's
# (0.171 sends `session-id`: tests/fixtures/codex/FINDINGS.md).
SESSION_HEADERS = ("x-claude-code-session-id", "x-sluice-session", "x-session-id", "session_id", "session-id")
# Where the agent works, when `sluice connect` (or the user) configured the agent to say so.
PLACE_HEADERS = {"repo": "x-sluice-repo", "branch": "x-sluice-branch", "cwd": "x-sluice-cwd"}
SESSION_MAX = 200
PLACE_MAX = {"repo": 300, "branch": 300, "cwd": 500}
CLIENT_MAX = 300
USER_MAX = 300


def clean(value: str, limit: int) -> str:
    """`value` without control characters (C0, DEL, C1), stripped and cut to `limit` characters."""
    if value.isprintable():
        return value.strip()[:limit]
    return "".join(c for c in value if c.isprintable() or c == " ").strip()[:limit]


def session_id_of(headers: Mapping[str, str]) -> str | None:
    """The session the headers name (the first of SESSION_HEADERS that is sent and not blank)."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value and (session := clean(value, SESSION_MAX)):
            return session
    return None


def fill_caller(ctx: RequestContext, headers: Mapping[str, str], doc: dict[str, Any]) -> None:
    ctx.client = clean(headers.get("user-agent", ""), CLIENT_MAX)
    ctx.session_id = session_id_of(headers)
    ctx.repo, ctx.branch, ctx.cwd = (
        clean(headers.get(PLACE_HEADERS[what], ""), PLACE_MAX[what]) or None for what in ("repo", "branch", "cwd")
    )
    metadata = doc.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else doc.get("user")
    if not isinstance(user, str) or not (user := clean(user, 100_000)):
        return
    ctx.user_id = user[:USER_MAX]
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
        return clean(str(session), SESSION_MAX) or None if session else None
    _, sep, session = user.rpartition("_session_")
    return clean(session, SESSION_MAX) or None if sep and session else None
