"""Retention and erasure reach the session ledger, which sums the request log: rows deleted by
age take their part of each session with them (a session is summed again from the rows it keeps,
and goes with its last), and a person's erasure blanks their end-user id and working directory in
both. On SQLite (each write path) and PostgreSQL. Each test fails on the code before: retention
and erasure did not touch `agent_session` / `agent_session_item`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sluice.sessions.ledger import fold, ledger_id
from sluice.storage.backends.sql import SqlStore
from sluice.storage.backends.sql_retention import SqlRetention
from sluice.storage.ports import Store
from sluice.storage.records import RequestLogEntry, SessionQuery
from tests.unit import test_session_ledger
from tests.unit.test_session_ledger import T0, entry

store = test_session_ledger.store  # the same fixture: every SQLite write path and PostgreSQL


def _summed(entries: list[RequestLogEntry]) -> dict[str, dict[str, Any]]:
    """What the ledger holds when summed from these entries at once."""
    out = {}
    for d in fold(entries):
        items = {(kind, name): (count, cost) for (kind, name), (count, cost) in d.items.items()}
        out[d.id] = {
            "requests": d.requests, "cost_pico": d.cost_pico, "input_tokens": d.input_tokens,
            "started_at": d.started_at, "ended_at": d.ended_at, "end_user": d.end_user, "cwd": d.cwd,
            "repo": d.repo, "items": items,
        }  # fmt: skip
    return out


async def _ledger(store: Store) -> dict[str, dict[str, Any]]:
    out = {}
    for s in await store.list_sessions(SessionQuery(limit=1000)):
        out[s["id"]] = {
            "requests": s["requests"], "cost_pico": s["cost_pico"], "input_tokens": s["input_tokens"],
            "started_at": s["started_at"], "ended_at": s["ended_at"], "end_user": s["end_user"], "cwd": s["cwd"],
            "repo": s["repo"], "items": {(i["kind"], i["name"]): (i["count"], i["cost_pico"]) for i in s["items"]},
        }  # fmt: skip
    return out


async def test_retention_takes_the_purged_rows_part_of_each_session(store: Store) -> None:
    assert isinstance(store, SqlStore)
    old = [entry(1, session="gone", minutes=0, user_id="dev-1"), entry(2, session="gone", minutes=5)]
    spanning_old = [
        entry(3, session="span", minutes=1, model="claude-haiku-4-5", cost_pico=70, user_id="dev-old"),
        entry(4, session="span", minutes=2, mcp_tools=("fs__read",), cwd="/home/old"),
    ]
    spanning_new = [entry(5, session="span", minutes=40, cost_pico=9, cwd="/src")]
    recent = [entry(6, session="new", minutes=50), entry(7, key="vk-b", session="gone", minutes=60)]
    unsessioned = [entry(8, session=None, minutes=3)]
    everything = old + spanning_old + spanning_new + recent + unsessioned
    await store.insert_requests(everything)
    assert len(await _ledger(store)) == 4
    kept = [e for e in everything if e.ts >= T0 + timedelta(minutes=30)]

    removed = await SqlRetention(store).delete_requests_before(T0 + timedelta(minutes=30))

    assert removed == 5
    ledger = await _ledger(store)
    assert ledger == _summed(kept)
    assert ledger_id("vk-a", "gone") not in ledger  # every row purged: the session goes
    span = ledger[ledger_id("vk-a", "span")]
    assert (span["requests"], span["cost_pico"], span["started_at"]) == (1, 9, T0 + timedelta(minutes=40))
    assert span["end_user"] is None and span["cwd"] == "/src" and ("model", "claude-haiku-4-5") not in span["items"]
    assert await SqlRetention(store).delete_requests_before(T0 + timedelta(minutes=30)) == 0
    assert await _ledger(store) == ledger


async def test_retention_removes_sessions_that_ended_before_it_even_without_their_rows(store: Store) -> None:
    """A ledger kept before retention reached it may hold sessions whose rows are long gone."""
    assert isinstance(store, SqlStore)
    await store.insert_requests([entry(1, session="orphan"), entry(2, session="live", minutes=60)])
    async with store.engine.begin() as conn:  # as retention before this change left it
        await conn.exec_driver_sql("DELETE FROM request_log WHERE session_id = 'orphan'")
    await SqlRetention(store).delete_requests_before(T0 + timedelta(minutes=30))
    assert list(await _ledger(store)) == [ledger_id("vk-a", "live")]
    async with store.engine.connect() as conn:
        items = (await conn.exec_driver_sql("SELECT DISTINCT session FROM agent_session_item")).all()
    assert [r[0] for r in items] == [ledger_id("vk-a", "live")]


async def test_erasure_blanks_the_persons_identifiers_in_the_log_and_the_ledger(store: Store) -> None:
    assert isinstance(store, SqlStore)
    entries = [
        entry(1, key="vk-alice", session="a", user_id="alice-device", cwd="/home/alice/api"),
        entry(2, key="vk-alice", session="a", minutes=1, user_id="alice-device", cwd="/home/alice/api"),
        # a key shared by two people: only the rows naming the erased end user are blanked
        entry(3, key="vk-shared", session="s", minutes=0, user_id="carol-device", cwd="/home/carol"),
        entry(4, key="vk-shared", session="s", minutes=5, user_id="dave-device", cwd="/home/dave"),
        entry(5, key="vk-shared", session="t", minutes=9, user_id="carol-device", cwd="/home/carol"),
        entry(6, key="vk-bob", session="b", user_id="bob-device", cwd="/home/bob"),
    ]
    await store.insert_requests(entries)
    retention = SqlRetention(store)

    rows, sessions = await retention.erase_identifiers({"vk-alice"}, None)
    assert (rows, sessions) == (2, 1)
    rows, sessions = await retention.erase_identifiers(set(), "carol-device")
    assert rows == 2 and sessions >= 2

    ledger = await _ledger(store)
    blank = {"user_id": None, "cwd": None}
    expected = [
        entry(1, key="vk-alice", session="a", **blank),
        entry(2, key="vk-alice", session="a", minutes=1, **blank),
        entry(3, key="vk-shared", session="s", minutes=0, **blank),
        entry(4, key="vk-shared", session="s", minutes=5, user_id="dave-device", cwd="/home/dave"),
        entry(5, key="vk-shared", session="t", minutes=9, **blank),
        entries[5],
    ]
    assert ledger == _summed(expected)
    assert ledger[ledger_id("vk-shared", "s")]["end_user"] == "dave-device"
    assert ledger[ledger_id("vk-bob", "b")]["end_user"] == "bob-device"
    async with store.engine.connect() as conn:
        logged = (await conn.exec_driver_sql("SELECT request_id, user_id, cwd FROM request_log")).all()
    assert {r[0]: (r[1], r[2]) for r in logged} == {e.request_id: (e.user_id, e.cwd) for e in expected}
    text = repr(await store.list_sessions(SessionQuery(limit=1000)))
    assert "alice" not in text.replace("vk-alice", "") and "carol" not in text
