"""Optional per-tool rate limits: at most N calls per fixed window, counted per key and tool.

Counted in this process: with several replicas each counts its own share (MCP sessions are
sticky to a replica anyway, see docs/mcp.md).
"""

from __future__ import annotations

import time
from fnmatch import fnmatchcase

from sluice.core.windows import Duration
from sluice.settings import ToolRateLimitConfig


class ToolRateLimits:
    def __init__(self, rules: list[ToolRateLimitConfig]) -> None:
        self._rules = [(r, float(Duration.parse(r.reset_duration).seconds or 1)) for r in rules]
        self._counts: dict[tuple[str, str, str, int], int] = {}

    def admit(self, key_id: str, server: str, tool: str, now: float | None = None) -> tuple[str, float] | None:
        """Counts the call, or returns (rule id, seconds until it may be retried) if a rule is full.
        A refused call is not counted, so a client that waits gets in when the window turns."""
        now = time.time() if now is None else now
        subject = f"{server}/{tool}"
        hits: list[tuple[str, str, str, int]] = []
        for rule, seconds in self._rules:
            if not any(fnmatchcase(subject, p) for p in rule.tools):
                continue
            window = int(now // seconds)
            slot = (rule.id, key_id, subject, window)
            if self._counts.get(slot, 0) >= rule.max_calls:
                return rule.id, (window + 1) * seconds - now
            hits.append(slot)
        for slot in hits:
            self._counts[slot] = self._counts.get(slot, 0) + 1
        if len(self._counts) > 10_000:
            self._forget_old(now)
        return None

    def _forget_old(self, now: float) -> None:
        seconds = {rule.id: s for rule, s in self._rules}
        self._counts = {k: v for k, v in self._counts.items() if (k[3] + 1) * seconds.get(k[0], 1) > now}
