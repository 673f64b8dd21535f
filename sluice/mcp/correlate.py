"""Which MCP tools an agent session called, for the request log entry of its next LLM call.

Correlation is by virtual key plus the agent's session id, taken on the MCP side from the same
headers as on LLM calls (`X-Claude-Code-Session-Id`, `X-Session-Id`). A client that sends no
session id on its MCP requests (Claude Code does not) has its calls attached to the next LLM
call of the same key, whatever its session: exact for a key used by one agent at a time, which
is what per-developer keys are. Kept in memory for an hour at most.
"""

from __future__ import annotations

import time

_KEEP_S = 3600.0


class SessionCalls:
    def __init__(self) -> None:
        self._pending: dict[str, list[tuple[str | None, str, float]]] = {}

    def add(self, key_id: str, agent_session: str | None, tool: str) -> None:
        self._pending.setdefault(key_id, []).append((agent_session, tool, time.monotonic()))

    def take(self, key_id: str, session_id: str | None) -> tuple[str, ...]:
        calls = self._pending.get(key_id)
        if not calls:
            return ()
        horizon = time.monotonic() - _KEEP_S
        taken = [tool for s, tool, t in calls if t >= horizon and (s is None or s == session_id)]
        kept = [c for c in calls if c[2] >= horizon and not (c[0] is None or c[0] == session_id)]
        if kept:
            self._pending[key_id] = kept
        else:
            del self._pending[key_id]
        return tuple(taken)
