"""Session caps: dollars and/or a duration per agent session, attached to a key, a team, a
customer or an access profile like any limit.

A cap's dollars are one more scope of `sluice.governance.limits.Limits` (a counter per session,
reserved before the provider call and settled after, exact across replicas on Redis), so
everything that admits through Limits (the live path, the policy simulator) enforces it. Its
duration runs from the session's first request, as the store first saw it (`MetaStore.first_seen`,
shared by every replica).

A session is its key's: the counter and the start belong to (key, session id), so another key that
names the same session id can neither spend a victim's cap nor inherit its start.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.windows import Duration
from sluice.sessions.ids import NO_SESSION
from sluice.settings import AccessProfileConfig, SessionCapConfig
from sluice.settings.session_caps import ProfileSessionCap
from sluice.storage.ports import MetaStore

PICO_PER_DOLLAR = 10**12
# A session's dollar counter outlives its last request by this long (or its duration cap, if longer).
SESSION_COUNTER_TTL_S = 7 * 86400
_STARTS_CACHED = 100_000


__all__ = ["NO_SESSION", "SessionCap", "SessionStarts", "caps_from", "profile_caps", "session_bucket"]


@dataclass(frozen=True, slots=True)
class SessionCap:
    id: str
    scope: str  # virtual_key | team | customer: what the cap is attached to
    scope_id: str
    max_cost_pico: int | None
    max_duration_s: int | None
    without_session: str  # refuse | shared
    fail_open: bool


def _cap(cap_id: str, scope: str, scope_id: str, config: SessionCapConfig | ProfileSessionCap) -> SessionCap:
    cost = int(config.max_cost * PICO_PER_DOLLAR) if config.max_cost is not None else None
    duration = Duration.parse(config.max_duration).seconds if config.max_duration else None
    return SessionCap(cap_id, scope, scope_id, cost, duration, config.without_session, config.fail_open)


def caps_from(configs: list[SessionCapConfig]) -> list[SessionCap]:
    return [_cap(c.id, *c.scope, c) for c in configs]


def profile_caps(profile: AccessProfileConfig, key_id: str) -> list[SessionCap]:
    """The profile's caps as caps of one derived key (named like its budgets' rules)."""
    return [_cap(f"{profile.id}/{c.id}@{key_id}", "virtual_key", key_id, c) for c in profile.session_caps]


def session_bucket(cap_id: str, key_id: str, session: str) -> str:
    """The counter of one cap for one key's session. Hashed: a session id is the caller's text."""
    digest = hashlib.sha256(f"{key_id}\0{session}".encode()).hexdigest()[:32]
    return f"{cap_id}:cost:session:{digest}"


def missing_session(cap: SessionCap) -> SluiceError:
    return SluiceError(
        ErrorKind.CALLER_BAD_REQUEST,
        f"Session cap '{cap.id}' applies to this key, and the request names no session: send the session's "
        "id in the x-sluice-session header (Claude Code, Codex and Gemini CLI send their own).",
        details={"limit_id": cap.id},
    )


def too_long(cap: SessionCap, session: str, ran_s: int) -> SluiceError:
    assert cap.max_duration_s is not None
    return SluiceError(
        ErrorKind.POLICY_BUDGET_EXCEEDED,
        f"Session cap '{cap.id}' ({cap.scope.replace('_', ' ')} {cap.scope_id}) is exhausted: this session "
        f"({session}) has run {_hours(ran_s)} since its first request, the cap is {_hours(cap.max_duration_s)} "
        "per session. Start a new session to go on.",
        details={"limit_id": cap.id, "limit": f"{_hours(cap.max_duration_s)} per session", "resets_at": None},
    )


def _hours(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m"


class SessionStarts:
    """When each key's session made its first request, as the store first saw it (shared by every
    replica); remembered here once read, since it never changes."""

    def __init__(self, store: MetaStore) -> None:
        self._store = store
        self._known: dict[tuple[str, str], int] = {}

    def known(self, key_id: str, session: str) -> int | None:
        """The session's start if this process has read it already (the synchronous path)."""
        return self._known.get((key_id, session))

    async def start_of(self, key_id: str, session: str, now: int) -> int:
        found = self._known.get((key_id, session))
        if found is None:
            if len(self._known) >= _STARTS_CACHED:
                self._known.clear()
            digest = hashlib.sha256(f"{key_id}\0{session}".encode()).hexdigest()[:40]
            found = self._known[key_id, session] = await self._store.first_seen(f"session:{digest}", now)
        return found
