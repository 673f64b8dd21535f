"""The kill switch: stop one session, one key, one team or the whole organisation.

A stop is a row in the store (`StopStore`), thrown and lifted by the admin API, the CLI or a
runaway detector, each recorded in the audit log with who and why. Every replica follows the
stops' version number (a poll of one row, every `interval` seconds: 0.25 s by default, so a stop
applies everywhere well within a second) and keeps the stops in force in memory, so the check on
the request path is a few dictionary lookups. A stop refuses new requests in its scope and ends
the streams in flight there (`Stream.halt`, which wakes a stream waiting on a silent provider
too); what a cut stream used is billed like any stream that ended early.

Session ids come from the caller, so they are compared in one canonical form (`session_key`):
a stop on a session cannot be dodged by re-spelling its id in another case, with surrounding
space, percent-escapes or Unicode look-alike forms. A session stop made for one key (`key_id`,
as a runaway pause is) stops only that key's session: another key naming the same id can
neither pause a victim's session nor be paused by it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from sluice.audit.log import AuditLog
from sluice.core.errors import ErrorKind, SluiceError
from sluice.governance.refresh import Follower
from sluice.sessions.ids import NO_SESSION, session_key
from sluice.storage.ports import StopStore
from sluice.storage.records import STOP_SCOPES, Stop, VirtualKey

log = logging.getLogger("sluice.stops")


class Haltable(Protocol):
    """A stream in flight that a stop can end (sluice.engine.stream.Stream)."""

    halt: SluiceError | None


class Stops:
    def __init__(self, store: StopStore, audit: AuditLog | None, *, interval: float = 0.25) -> None:
        self._store = store
        self._audit = audit
        self._org: Stop | None = None
        self._keys: dict[str, Stop] = {}
        self._teams: dict[str, Stop] = {}
        self._sessions: dict[str, list[Stop]] = {}
        self.active: list[Stop] = []
        # Streams in flight (by id), with the key and session they run for, from `watch` until
        # `unwatch` (the engine's `finish`, which every request reaches).
        self._streams: dict[int, tuple[Haltable, VirtualKey, str | None]] = {}
        self._follower = Follower("stops", store.stops_version, self.reload, interval=interval)

    async def start(self) -> None:
        await self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()

    async def reload(self) -> None:
        self._index(await self._store.list_stops(active_only=True))

    def _index(self, stops: Iterable[Stop]) -> None:
        org: Stop | None = None
        keys: dict[str, Stop] = {}
        teams: dict[str, Stop] = {}
        sessions: dict[str, list[Stop]] = {}
        active = list(stops)
        for stop in active:
            if stop.scope == "org":
                org = stop
            elif stop.scope == "virtual_key":
                keys[stop.target] = stop
            elif stop.scope == "team":
                teams[stop.target] = stop
            elif stop.scope == "session":
                sessions.setdefault(stop.target, []).append(stop)
        self._org, self._keys, self._teams, self._sessions, self.active = org, keys, teams, sessions, active
        for stream, key, session in list(self._streams.values()):
            if stream.halt is None and (found := self.check(key, session)) is not None:
                stream.halt = refusal(found)

    @property
    def any(self) -> bool:
        return bool(self.active)

    def check(self, key: VirtualKey, session_id: str | None) -> Stop | None:
        """The stop in force on this key's request, if any (the widest scope first)."""
        if self._org is not None:
            return self._org
        found = self._keys.get(key.id)
        if found is None and key.team_id is not None:
            found = self._teams.get(key.team_id)
        if found is None and self._sessions:
            for stop in self._sessions.get(session_key(session_id) or NO_SESSION, ()):
                if stop.key_id is None or stop.key_id == key.id:
                    return stop
        return found

    def watch(self, stream: Haltable, key: VirtualKey, session_id: str | None) -> None:
        """Follows a stream in flight until `unwatch`: a stop on its scope ends it."""
        self._streams[id(stream)] = (stream, key, session_id)
        if (found := self.check(key, session_id)) is not None:
            stream.halt = refusal(found)

    def unwatch(self, stream: Haltable) -> None:
        self._streams.pop(id(stream), None)

    async def throw(self, scope: str, target: str, reason: str, actor: str, *, key_id: str | None = None) -> Stop:
        """Stops a scope now (this replica at once, the others within one interval)."""
        scope, target = _checked(scope, target)
        stop = await self._store.add_stop(scope, target, key_id, reason, actor)
        await self._record("stop", actor, stop, reason)
        await self._follower.load()
        return stop

    async def throw_once(
        self, scope: str, target: str, reason: str, actor: str, *, key_id: str | None = None, recorded: bool = False
    ) -> Stop:
        """Throws a stop unless this very one was ever thrown (a runaway detection's pause, redone
        after a crash): thrown and recorded once, and not thrown again once lifted. `recorded`:
        its `stop` record is in the audit log already (else a stop found thrown is recorded now:
        its thrower died before recording it)."""
        scope, target = _checked(scope, target)
        stop, thrown = await self._store.add_stop_once(scope, target, key_id, reason, actor)
        if thrown or not recorded:
            await self._record("stop", actor, stop, reason)
        await self._follower.load()  # thrown by this call or by a dead process: in force here now
        return stop

    async def lift(
        self, scope: str, target: str, reason: str, actor: str, *, key_id: str | None = None, any_key: bool = True
    ) -> list[Stop]:
        """Lifts the stops in force on exactly this scope and target; [] when there was none."""
        scope, target = _checked(scope, target)
        lifted = await self._store.lift_stops(scope, target, key_id, actor, reason, any_key=any_key and key_id is None)
        for stop in lifted:
            await self._record("resume", actor, stop, reason)
        if lifted:
            await self._follower.load()
        return lifted

    async def _record(self, kind: str, actor: str, stop: Stop, reason: str) -> None:
        if self._audit is not None:
            await self._audit.append(kind, actor, {**describe(stop), "reason": reason})


def _checked(scope: str, target: str) -> tuple[str, str]:
    scope = {"key": "virtual_key", "organisation": "org", "organization": "org"}.get(scope, scope)
    if scope not in STOP_SCOPES:
        raise ValueError(f"scope must be one of session, key, team, org (not {scope!r})")
    if scope == "org":
        return scope, ""
    if scope == "session":
        canonical = session_key(target)
        if canonical is None:
            raise ValueError("a session stop needs the session id")
        return scope, canonical
    if not target.strip():
        raise ValueError(f"a {scope.replace('_', ' ')} stop needs its id")
    return scope, target.strip()


def normalised(scope: str, target: str) -> tuple[str, str]:
    """(scope, target) as the store keeps them; ValueError for a scope or target that is not one."""
    return _checked(scope, target)


def describe(stop: Stop) -> dict[str, object]:
    """A stop as the audit log, the admin API and the CLI show it."""
    return {
        "stop_id": stop.id,
        "scope": stop.scope,
        "target": stop.target,
        "key_id": stop.key_id,
        "stopped_by": stop.actor,
        "stop_reason": stop.reason,
        "created_at": stop.created_at.isoformat(),
        "lifted_at": stop.lifted_at.isoformat() if stop.lifted_at else None,
        "lifted_by": stop.lifted_by,
        "lift_reason": stop.lift_reason,
    }


def refusal(stop: Stop) -> SluiceError:
    """What a request or a stream in a stopped scope is told, in the surface's own error format."""
    what = {
        "org": "all traffic of this gateway",
        "virtual_key": f"this key ({stop.target})",
        "team": f"team {stop.target}",
        "session": f"this session ({stop.target})",
    }[stop.scope]
    verb = "paused" if stop.actor.startswith("runaway:") else "stopped"
    message = (
        f"Sluice {verb} {what}: {stop.reason} (by {stop.actor}). Requests are refused until an admin runs "
        f"`sluice resume {_cli_scope(stop.scope)}{' ' + stop.target if stop.target else ''}`."
    )
    details: dict[str, object] = {"stop_id": stop.id, "scope": stop.scope, "target": stop.target}
    return SluiceError(ErrorKind.POLICY_STOPPED, message, details=details)


def _cli_scope(scope: str) -> str:
    return "key" if scope == "virtual_key" else scope
