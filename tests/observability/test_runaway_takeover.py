"""A runaway detection's whole effect (its `runaway` audit record, its alert, its pause) survives a
crash at any point between its claim and its end: the claim is pending with what the detection
does, and a restarted process (its takeover loop, or the next check detecting the same thing)
redoes what is missing once the claim is older than the lease, exactly once across replicas
(SQLite and PostgreSQL, each process with its own connections to one database). Also: the
claims of the version before 0019 left in `sluice_meta` are pruned after the claim retention."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from sqlalchemy import func, insert, select

from sluice.alerts.monitor import AlertMonitor, claim_key
from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.core.errors import ErrorKind, SluiceError
from sluice.sessions.runaway import Runaway
from sluice.sessions.stops import Stops
from sluice.settings import AlertsConfig, RunawayConfig, parse_config
from sluice.storage.backends.sql import SqlStore
from sluice.storage.backends.sql_tables import alert_claim, meta
from sluice.storage.ports import Store
from sluice.storage.records import VirtualKey

PG = "postgresql://postgres@127.0.0.1:5432"
AUDIT = parse_config({"audit": {"hmac_key": "runaway-takeover-audit-key-0123456789"}}).audit
RULE = RunawayConfig(id="loops", virtual_key_id="vk-loop", tool_loop_repeats=3, action="pause")
KEY = VirtualKey("vk-loop", "vk-loop", "h", "h", (), team_id="team-a")
SESSION = "refactor-7"
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


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 2, 12, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return self.at.timestamp()


class Crash(BaseException):
    """The process dies here (not an error any code catches)."""


async def crash(*args: Any, **kwargs: Any) -> Any:
    raise Crash


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[Store]]:
    """Three stores on one database: three processes (a dying one, its restart, another replica)."""
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runaway.db'}"
    else:
        name = "sluice_test_" + uuid.uuid4().hex[:8]
        admin = await asyncpg.connect(PG + "/postgres")
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG}/{name}"
    opened = [open_store(url) for _ in range(3)]
    try:
        await opened[0].migrate()
        yield opened
    finally:
        for store in opened:
            await store.close()
        if admin is not None:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()


class Process:
    """One gateway process's parts that a detection goes through."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.audit = AuditLog(AUDIT, store)
        self.monitor = AlertMonitor(
            AlertsConfig(provider_health=False), self.audit, store, cast(Any, None), cast(Any, None), clock=clock
        )
        self.stops = Stops(store, self.audit)
        self.runaway = Runaway([RULE], store, stops=self.stops, audit=self.audit, fire=self.monitor.fire, lease_s=60)
        self.runaway.clock = lambda: clock.at.timestamp()

    async def detect(self) -> None:
        """A request of the looping session comes in: refused (paused) once the detection is done."""
        with pytest.raises(SluiceError) as refused:
            await self.runaway.on_request(KEY, SESSION, LOOP)
        assert refused.value.kind is ErrorKind.POLICY_STOPPED


def crash_on_append(process: Process, kind: str) -> None:
    append = process.audit.append

    async def dying(record_kind: str, *args: Any, **kwargs: Any) -> Any:
        if record_kind == kind:
            raise Crash
        return await append(record_kind, *args, **kwargs)

    process.audit.append = dying  # type: ignore[method-assign]


def crash_before_marking_done(process: Process) -> Callable[[], None]:
    store = process.store
    swap = store.swap_alert_claim

    async def dying(key: str, token: int, new_token: int, claimed_ms: int, state: str, *args: Any) -> bool:
        if state == "recorded" and key == claim_key("detection:" + digest_of()):
            raise Crash
        return await swap(key, token, new_token, claimed_ms, state, *args)

    store.swap_alert_claim = dying  # type: ignore[method-assign]
    return lambda: delattr(store, "swap_alert_claim")


def digest_of() -> str:
    return hashlib.sha256(f"{RULE.id}\0tool_loop\0{KEY.id}\0{SESSION}".encode()).hexdigest()[:32]


# Each step of a detection, and how a process dies just before it.
CRASHES: dict[str, Callable[[Process], Any]] = {
    "before the runaway record": lambda p: crash_on_append(p, "runaway"),
    "before the alert": lambda p: setattr(p.runaway, "_fire", crash),
    "inside the alert, after its claim": lambda p: crash_on_append(p, "alert"),
    "before the pause": lambda p: setattr(p.stops, "throw_once", crash),
    "after the stop, before its record": lambda p: crash_on_append(p, "stop"),
    "before the detection is marked done": crash_before_marking_done,
}


async def die_detecting(store: Store, clock: Clock, where: str) -> None:
    dying = Process(store, clock)
    undo = CRASHES[where](dying)
    with pytest.raises(Crash):
        await dying.runaway.on_request(KEY, SESSION, LOOP)
    if callable(undo):
        undo()


async def effects(store: Store) -> dict[str, int]:
    """How many times each effect of the detection happened."""
    counts = {"runaway": 0, "alert": 0, "stop": 0}
    async for record in store.audit_records():
        if record.kind == "alert" and record.data["alert_id"].startswith("runaway:"):
            counts["alert"] += 1
        elif record.kind in ("runaway", "stop"):
            counts[record.kind] += 1
    counts["stops thrown"] = len([s for s in await store.list_stops(active_only=False) if s.target == SESSION])
    return counts


ONCE = {"runaway": 1, "alert": 1, "stop": 1, "stops thrown": 1}


@pytest.mark.parametrize("where", list(CRASHES))
async def test_a_crash_at_any_step_is_redone_once_by_the_next_detection(stores: list[Store], where: str) -> None:
    clock = Clock()
    await die_detecting(stores[0], clock, where)
    assert (await effects(stores[0]) == ONCE) is (where == "before the detection is marked done")
    restarted = Process(stores[1], clock)
    clock.at += timedelta(minutes=2)  # older than the lease (60 s): its process is gone
    await restarted.detect()  # the same loop detected again: the detection is taken over, redone, paused
    assert await effects(stores[0]) == ONCE
    later = Process(stores[2], clock)  # another replica, much later: nothing again
    await later.stops.reload()
    clock.at += timedelta(hours=2)
    assert await later.runaway.take_over_stale() == 0
    assert await later.monitor.take_over_stale() == []
    await later.detect()
    await restarted.detect()
    assert await effects(stores[0]) == ONCE


@pytest.mark.parametrize("where", list(CRASHES))
async def test_a_crash_at_any_step_is_redone_once_by_the_takeover(stores: list[Store], where: str) -> None:
    """The session never sends another request (it ended): only the takeover can redo it."""
    clock = Clock()
    await die_detecting(stores[0], clock, where)
    replicas = [Process(stores[1], clock), Process(stores[2], clock)]
    clock.at += timedelta(seconds=30)  # maybe its claimer is still at it: left alone
    assert [await r.runaway.take_over_stale() for r in replicas] == [0, 0]
    clock.at += timedelta(seconds=31)
    # The alert takeover leaves a detection's claim to the detection's (it is no alert to raise).
    raised = await replicas[0].monitor.take_over_stale()
    assert [a["alert_id"] for a in raised] == (["runaway:" + digest_of()] if "inside" in where else [])
    taken = await asyncio.gather(*(r.runaway.take_over_stale() for r in replicas))
    assert sorted(taken) == [0, 1]  # two replicas at once: one wins
    assert await effects(stores[0]) == ONCE
    taken = await asyncio.gather(*(r.runaway.take_over_stale() for r in replicas))
    assert taken == [0, 0]
    assert [await r.monitor.take_over_stale() for r in replicas] == [[], []]
    assert await effects(stores[0]) == ONCE
    await replicas[0].stops.reload()
    assert replicas[0].stops.check(KEY, SESSION) is not None  # paused on every replica


async def test_the_takeover_loop_redoes_it_once_started(stores: list[Store]) -> None:
    clock = Clock()
    await die_detecting(stores[0], clock, "before the runaway record")
    clock.at += timedelta(minutes=2)
    restarted = Process(stores[1], clock)
    restarted.runaway.start()  # the loop's first turn, at start
    try:
        for _ in range(400):
            if (await effects(stores[0]))["stops thrown"]:
                break
            await asyncio.sleep(0.05)
    finally:
        await restarted.runaway.stop()
    assert await effects(stores[0]) == ONCE


async def test_a_holder_stalled_past_the_lease_stops_once_taken_over(stores: list[Store]) -> None:
    """A process stalls in the alert past the lease; another takes the detection over and finishes
    it; the first, waking, does nothing more (it would record the pause a second time)."""
    clock = Clock()
    stalled, other = Process(stores[0], clock), Process(stores[1], clock)
    fire = stalled.monitor.fire

    async def stalling(*args: Any, **facts: Any) -> Any:
        clock.at += timedelta(minutes=2)
        assert await other.runaway.take_over_stale() == 1
        return await fire(*args, **facts)

    stalled.runaway._fire = stalling
    with contextlib.suppress(SluiceError):  # refused or not: its pause is the other's
        await stalled.runaway.on_request(KEY, SESSION, LOOP)
    assert await effects(stores[0]) == ONCE


async def test_a_pause_lifted_before_the_takeover_is_not_thrown_again(stores: list[Store]) -> None:
    clock = Clock()
    await die_detecting(stores[0], clock, "before the detection is marked done")
    admin = Process(stores[1], clock)
    assert await admin.stops.lift("session", SESSION, "false alarm", "admin@example.com", key_id=KEY.id)
    clock.at += timedelta(minutes=2)
    assert await admin.runaway.take_over_stale() == 1
    assert await effects(stores[0]) == ONCE
    await admin.stops.reload()
    assert admin.stops.check(KEY, SESSION) is None


async def test_a_detection_claimed_by_the_version_before_is_not_redone(stores: list[Store]) -> None:
    clock = Clock()
    await stores[0].first_seen(f"runaway:{digest_of()}", 1)  # its claim, in sluice_meta
    process = Process(stores[1], clock)
    await process.runaway.on_request(KEY, SESSION, LOOP)  # not paused again (an admin may have resumed it)
    assert await effects(stores[0]) == {"runaway": 0, "alert": 0, "stop": 0, "stops thrown": 0}


async def _meta_alert_rows(store: Store) -> int:
    async with cast(SqlStore, store).engine.connect() as conn:
        query = select(func.count()).select_from(meta).where(meta.c.name.startswith("alert:"))
        return int((await conn.execute(query)).scalar_one())


async def test_the_claims_left_in_sluice_meta_are_pruned_after_the_retention(stores: list[Store]) -> None:
    clock = Clock()
    process = Process(stores[0], clock)
    now_ms = int(clock.at.timestamp() * 1000)
    copied = "guardrail:req-1:no-secrets"  # claimed by the version before, copied by migration 0019
    late = "guardrail:req-2:no-secrets"  # claimed by one of its replicas during the rolling update
    pending = "guardrail:req-3:no-secrets"  # claimed, not recorded, by one of them
    engine = cast(SqlStore, stores[0]).engine
    async with engine.begin() as conn:
        await conn.execute(
            insert(meta),
            [
                {"name": "alert:" + claim_key(copied), "value": 1},
                {"name": "alert:" + claim_key(late), "value": 1},
                {"name": "alert:" + claim_key(pending), "value": -((now_ms << 12) | 7)},
                {"name": "runaway:0123", "value": 5},  # not an alert's: kept
            ],
        )
        await conn.execute(
            insert(alert_claim).values(
                key=claim_key(copied), alert_id="", state="recorded", token=1, claimed_ms=now_ms,
                keep_until_ms=now_ms + 400 * 86_400_000, audit_after=0,
            )
        )  # fmt: skip
    assert await process.monitor.prune() == 0  # each has its copy now; none older than the retention
    assert await _meta_alert_rows(stores[0]) == 3
    clock.at += timedelta(days=6)
    assert await process.monitor.prune() == 0
    clock.at += timedelta(days=2)  # past the retention (7 days): no replica of that version is left
    assert await process.monitor.prune() == 3
    assert await _meta_alert_rows(stores[0]) == 0
    assert await stores[0].meta_value("runaway:0123") == 5
    for alert_id in (copied, late):  # still claimed: not raised again by this version
        assert await process.monitor.fire(alert_id, "guardrail", "warning", "matched") is None
    assert await process.monitor.prune() == 0
