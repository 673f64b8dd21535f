"""The kill switch over one store shared by two replicas (two `Stops`), and runaway pauses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluice.app import open_store
from sluice.core.errors import ErrorKind, SluiceError
from sluice.sessions.ids import session_key
from sluice.sessions.runaway import Runaway
from sluice.sessions.stops import Stops
from sluice.settings import RunawayConfig
from sluice.storage.ports import Store
from sluice.storage.records import VirtualKey


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'stops.db'}")
    await s.migrate()
    yield s
    await s.close()


def key(key_id: str, team: str | None = None) -> VirtualKey:
    return VirtualKey(key_id, key_id, "h", "h", (), team_id=team)


class Halted:
    def __init__(self) -> None:
        self.halt: SluiceError | None = None


async def _eventually(condition: Any) -> None:
    """A safety net for the other replica's poll, not a timing assertion."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("never happened")


async def test_a_stop_on_one_replica_applies_on_the_other_and_ends_its_streams(store: Store) -> None:
    here, there = Stops(store, None, interval=0.05), Stops(store, None, interval=0.05)
    await here.start()
    await there.start()
    try:
        alice, bob = key("vk-alice", "team-a"), key("vk-bob", "team-b")
        stream = Halted()
        there.watch(stream, alice, "s-1")
        await here.throw("team", "team-a", "incident 42", "admin:root")
        await _eventually(lambda: there.check(alice, "s-1") is not None)
        assert there.check(alice, None) is not None and there.check(alice, "any-new-session") is not None
        assert there.check(bob, "s-1") is None
        assert stream.halt is not None and stream.halt.kind is ErrorKind.POLICY_STOPPED
        assert "team team-a: incident 42 (by admin:root)" in stream.halt.message
        assert await there.lift("team", "team-a", "over", "admin:root")
        await _eventually(lambda: here.check(alice, "s-1") is None)
    finally:
        await here.stop()
        await there.stop()


async def test_the_organisation_stop_covers_everyone(store: Store) -> None:
    stops = Stops(store, None)
    await stops.start()
    try:
        await stops.throw("org", "", "provider breach", "admin:root")
        assert stops.check(key("vk-x"), None) is not None
        assert stops.check(key("vk-y", "t"), "s") is not None
        assert len(await stops.lift("organisation", "ignored", "ok", "admin:root")) == 1
        assert stops.check(key("vk-x"), None) is None
    finally:
        await stops.stop()


async def test_a_session_stop_matches_every_spelling_of_the_id(store: Store) -> None:
    stops = Stops(store, None)
    await stops.start()
    try:
        await stops.throw("session", "Abc-Def", "why", "admin:root")
        for spelling in ("abc-def", "ABC-DEF", "  abc-def\t", "abc%2Ddef", "ａｂｃ-ｄｅｆ"):
            assert stops.check(key("vk-1"), spelling) is not None, spelling
        assert stops.check(key("vk-1"), "abc-deff") is None
    finally:
        await stops.stop()


async def test_a_stop_made_for_one_keys_session_stops_no_other_keys_session_of_that_name(store: Store) -> None:
    stops = Stops(store, None)
    await stops.start()
    try:
        await stops.throw("session", "shared-name", "runaway", "runaway:r", key_id="vk-attacker")
        assert stops.check(key("vk-attacker"), "shared-name") is not None
        assert stops.check(key("vk-victim"), "shared-name") is None
    finally:
        await stops.stop()


async def test_bad_scopes_and_targets_are_refused(store: Store) -> None:
    stops = Stops(store, None)
    for scope, target in (("planet", "x"), ("session", "   "), ("key", ""), ("team", " ")):
        with pytest.raises(ValueError):
            await stops.throw(scope, target, "r", "a")


def test_session_key_is_one_canonical_form() -> None:
    assert session_key(" A%42c ") == session_key("abc") == "abc"
    assert session_key(None) is None and session_key("  ") is None
    assert len(session_key("x" * 5000) or "") == 200


LOOP = {
    "messages": [
        m
        for i in range(3)
        for m in (
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": {"c": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "is_error": True}]},
        )
    ]
}


async def test_a_pause_rule_stops_the_session_once_and_a_warn_rule_only_records(store: Store) -> None:
    stops = Stops(store, None)
    await stops.start()
    fired: list[tuple[Any, ...]] = []

    async def fire(*args: Any, **facts: Any) -> dict[str, Any]:
        fired.append((*args, facts))
        return {}

    rules = [
        RunawayConfig(id="warn-all", tool_loop_repeats=2),
        RunawayConfig(id="pause-team", team_id="team-a", tool_loop_repeats=3, action="pause"),
    ]
    runaway = Runaway(rules, store, stops=stops, audit=None, fire=fire)
    try:
        outsider = key("vk-out", "team-b")
        await runaway.on_request(outsider, "s", LOOP)  # warned, not paused
        assert stops.check(outsider, "s") is None
        assert [f[0] for f in fired] == [fired[0][0]] and fired[0][1] == "runaway" and fired[0][2] == "warning"
        member = key("vk-in", "team-a")
        with pytest.raises(SluiceError) as paused:
            await runaway.on_request(member, "S", LOOP)
        assert paused.value.kind is ErrorKind.POLICY_STOPPED and "paused this session (s)" in paused.value.message
        assert stops.check(member, "s") is not None and stops.check(member, "other") is None
        # The same detection again (another request of the loop) fires nothing more.
        count = len(fired)
        with pytest.raises(SluiceError):
            await runaway.on_request(member, "s", LOOP)
        assert len(fired) == count
    finally:
        await stops.stop()


async def test_spend_rate_and_session_hours(store: Store) -> None:
    fired: list[str] = []

    async def fire(alert_id: str, kind: str, severity: str, summary: str, **facts: Any) -> dict[str, Any]:
        fired.append(summary)
        return {}

    now = [1_000_000.0]
    rules = [
        RunawayConfig(id="rate", spend_rate_usd_per_hour=6, spend_rate_window="10m"),  # $1 per 10 minutes
        RunawayConfig(id="hours", max_session_hours=2),
    ]
    runaway = Runaway(rules, store, stops=None, audit=None, fire=fire)
    runaway.clock = lambda: now[0]
    k = key("vk-1")
    await runaway.on_settled(k, "s", 6 * 10**11)  # $0.60
    now[0] += 300
    await runaway.on_settled(k, "s", 3 * 10**11)  # $0.90 in 5 minutes: within $1 per 10 minutes
    assert fired == []
    now[0] += 60
    await runaway.on_settled(k, "s", 2 * 10**11)  # $1.10 in 6 minutes
    assert len(fired) == 1 and "spent $1.1000 in 10m" in fired[0]
    await runaway.on_request(k, "long", {})
    now[0] += 2 * 3600
    await runaway.on_request(k, "long", {})
    assert len(fired) == 2 and "session has run 2.0 h" in fired[1]
