"""The session ledger: what a batch of request log entries adds to each agent session.

A session is a virtual key and the session id its client sent (sluice.http.identity): the key is
part of it, so another key naming the same id starts a session of its own rather than adding to
(or reading) someone else's. Entries without a key or a session id belong to no session.

`fold` turns a batch into one `SessionDelta` per session: sums (requests, errors, tokens, cost),
the span (first start, last end) and the latest facts (client, repository, branch, working
directory: a session reports the values of its newest request), plus counted items (models, MCP
tools, error kinds). The store adds a delta to the session's row with commutative operations
(sums, min, max, latest-by-time), so batches may land in any order, from any replica, and the
ledger is the same as if it were summed from the log at once.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sluice.storage.records import RequestLogEntry

# "claude-cli/2.1.197 (external, sdk-cli)", "codex_exec/0.171.0 (Debian ...)",
# "GeminiCLI-tui/0.61.0/gemini-2.5-flash (linux; ...)", "opencode/0.15": a name, then a version.
_AGENT = re.compile(r"^\s*([A-Za-z][\w.\-]{0,99})/v?(\d[\w.\-+]{0,99})")


def ledger_id(key_id: str, session_id: str) -> str:
    """The ledger's id of a session: fixed length and URL-safe, whatever the client sent."""
    return hashlib.sha256(f"{key_id}\x00{session_id}".encode()).hexdigest()[:32]


def client_of(user_agent: str) -> tuple[str | None, str | None]:
    """(client name, version) from a User-Agent, when it starts with `name/version`."""
    found = _AGENT.match(user_agent or "")
    if found is None:
        return (user_agent.strip()[:100] or None) if user_agent else None, None
    return found.group(1), found.group(2).rstrip(".-")


@dataclass(slots=True)
class SessionDelta:
    id: str
    virtual_key_id: str
    session_id: str
    team_id: str | None
    started_at: datetime
    ended_at: datetime
    end_user: str | None = None
    user_agent: str | None = None
    repo: str | None = None
    branch: str | None = None
    cwd: str | None = None
    requests: int = 0
    errors: int = 0
    denied: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_pico: int = 0
    # (kind, name) -> [count, cost]: kind "model", "tool" or "error"
    items: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @property
    def client(self) -> str | None:
        return client_of(self.user_agent or "")[0]

    @property
    def client_version(self) -> str | None:
        return client_of(self.user_agent or "")[1]

    def add(self, e: RequestLogEntry) -> None:
        end = e.ts + timedelta(milliseconds=max(0.0, e.latency_ms))
        if e.ts < self.started_at:
            self.started_at = e.ts
        if end >= self.ended_at:  # the newest request's facts, when it sent them
            self.ended_at = end
            self.user_agent = e.client or self.user_agent
            self.end_user = e.user_id or self.end_user
            self.repo, self.branch, self.cwd = e.repo or self.repo, e.branch or self.branch, e.cwd or self.cwd
        else:
            self.user_agent = self.user_agent or e.client or None
            self.end_user = self.end_user or e.user_id
            self.repo, self.branch, self.cwd = self.repo or e.repo, self.branch or e.branch, self.cwd or e.cwd
        self.requests += 1
        self.denied += e.decision == "deny"
        self.errors += e.decision != "allow" or e.status >= 400
        self.input_tokens += e.input_tokens
        self.output_tokens += e.output_tokens
        self.cache_read_tokens += e.cache_read_tokens
        self.cache_write_tokens += e.cache_write_tokens
        self.cost_pico += e.cost_pico
        model = e.model or e.requested_model
        if model:
            self._count("model", model[:300], e.cost_pico)
        for tool, times in Counter(e.mcp_tools).items():
            self._count("tool", tool[:300], 0, times)
        if e.error_kind:
            self._count("error", e.error_kind[:300], 0)

    def _count(self, kind: str, name: str, cost: int, times: int = 1) -> None:
        item = self.items.setdefault((kind, name), [0, 0])
        item[0] += times
        item[1] += cost


def fold(entries: Iterable[RequestLogEntry], into: dict[str, SessionDelta] | None = None) -> list[SessionDelta]:
    """One delta per session the entries belong to (entries of no session are left out), added
    to `into`'s when given (a log read a page at a time)."""
    found: dict[str, SessionDelta] = {} if into is None else into
    for e in entries:
        if not e.session_id or not e.virtual_key_id:
            continue
        sid = ledger_id(e.virtual_key_id, e.session_id)
        delta = found.get(sid)
        if delta is None:
            delta = found[sid] = SessionDelta(sid, e.virtual_key_id, e.session_id, e.team_id, e.ts, e.ts)
        delta.add(e)
    # In id order: two replicas' batches lock the rows of the sessions they share in the same
    # order, so their transactions wait for each other rather than deadlock (PostgreSQL).
    return [found[sid] for sid in sorted(found)]
