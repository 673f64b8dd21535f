"""The session ledger kept by the request-log writer: exact sums whatever the batches' order,
a replayed batch adds nothing, sessions are bound to their key, on SQLite (the writer thread's
fast path and SQLAlchemy's) and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from sluice.app import open_store
from sluice.sessions.ledger import client_of, fold, ledger_id
from sluice.storage.backends.sql import SqlStore
from sluice.storage.backends.sql_sessions import item_upsert_sql, session_upsert_sql
from sluice.storage.ports import Store
from sluice.storage.records import RequestLogEntry, SessionQuery

PG = "postgresql://postgres@127.0.0.1:5432"
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def entry(n: int, *, key: str = "vk-a", session: str | None = "s-1", minutes: int = 0, **over: Any) -> RequestLogEntry:
    base = RequestLogEntry(
        request_id=f"req-{key}-{n}",
        ts=T0 + timedelta(minutes=minutes),
        path="/v1/messages",
        surface="anthropic",
        status=200,
        decision="allow",
        virtual_key_id=key,
        team_id="team-a",
        client="claude-cli/2.1.197 (external, sdk-cli)",
        session_id=session,
        model="claude-sonnet-4-6",
        input_tokens=100,
        output_tokens=10,
        cache_read_tokens=5,
        cost_pico=1000,
        latency_ms=500.0,
    )
    return replace(base, **over)


@pytest.fixture(params=["sqlite-writer-thread", "sqlite-driver", "sqlite-sqlalchemy", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgresql":
        name = "sluice_test_" + uuid.uuid4().hex[:8]
        admin = await asyncpg.connect(PG + "/postgres")
        await admin.execute(f'CREATE DATABASE "{name}"')
        found = open_store(f"{PG}/{name}")
        try:
            await found.migrate()
            yield found
        finally:
            await found.close()
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()
        return
    found = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    await found.migrate()
    assert isinstance(found, SqlStore)
    if request.param != "sqlite-writer-thread":  # the store's other two write paths, on the same file
        found._fast = None
    if request.param == "sqlite-sqlalchemy":  # what drivers other than sqlite3 and asyncpg take
        found._plain = False
        found._session_sql, found._item_sql = session_upsert_sql("named"), item_upsert_sql("named")
    try:
        yield found
    finally:
        await found.close()


async def test_a_session_is_summed_exactly_whatever_the_batches_order(store: Store) -> None:
    late = entry(
        3,
        minutes=30,
        repo="acme/api",
        branch="fix-login",
        cwd="/src/api",
        status=429,
        decision="deny",
        error_kind="policy_rate_limited",
        cost_pico=0,
        client="claude-cli/2.1.200 (x)",
    )
    early = entry(1, minutes=0, repo="acme/api", branch="main", mcp_tools=("fs__read", "fs__read", "git__log"))
    middle = entry(2, minutes=10, model="claude-haiku-4-5", cost_pico=50)
    await store.insert_requests([late])  # the newest first: the facts stay the newest's
    await store.insert_requests([early, middle])
    [s] = await store.list_sessions(SessionQuery())
    assert s["id"] == ledger_id("vk-a", "s-1") and s["session_id"] == "s-1"
    assert (s["requests"], s["errors"], s["denied"]) == (3, 1, 1)
    assert (s["input_tokens"], s["output_tokens"], s["cache_read_tokens"], s["cost_pico"]) == (300, 30, 15, 1050)
    assert s["started_at"] == T0 and s["ended_at"] == T0 + timedelta(minutes=30, milliseconds=500)
    assert (s["repo"], s["branch"], s["cwd"]) == ("acme/api", "fix-login", "/src/api")
    assert (s["client"], s["client_version"]) == ("claude-cli", "2.1.200")
    items = {(i["kind"], i["name"]): (i["count"], i["cost_pico"]) for i in s["items"]}
    assert items == {
        ("model", "claude-sonnet-4-6"): (2, 1000),
        ("model", "claude-haiku-4-5"): (1, 50),
        ("tool", "fs__read"): (2, 0),
        ("tool", "git__log"): (1, 0),
        ("error", "policy_rate_limited"): (1, 0),
    }


async def test_a_batch_written_again_adds_nothing(store: Store) -> None:
    batch = [entry(1), entry(2, minutes=1)]
    await store.insert_requests(batch)
    await store.insert_requests(batch)  # a retry after a lost commit answer, or a spill replayed
    await store.insert_requests([batch[0], entry(3, minutes=2)])
    [s] = await store.list_sessions(SessionQuery())
    assert s["requests"] == 3 and s["cost_pico"] == 3000
    assert [i["count"] for i in s["items"] if i["kind"] == "model"] == [3]


async def test_another_key_naming_the_same_session_gets_a_session_of_its_own(store: Store) -> None:
    await store.insert_requests([entry(1), entry(2, key="vk-intruder", cost_pico=999_999)])
    found = {s["virtual_key_id"]: s for s in await store.list_sessions(SessionQuery())}
    assert found["vk-a"]["cost_pico"] == 1000 and found["vk-intruder"]["cost_pico"] == 999_999
    assert found["vk-a"]["id"] != found["vk-intruder"]["id"]
    got = await store.get_session(found["vk-a"]["id"])
    assert got is not None and got["requests"] == 1
    rows = await store.session_requests("vk-a", "s-1")
    assert [r["request_id"] for r in rows] == ["req-vk-a-1"]


async def test_entries_without_a_session_or_a_key_are_in_no_session(store: Store) -> None:
    await store.insert_requests([entry(1, session=None), entry(2, key=None)])  # type: ignore[arg-type]
    assert await store.list_sessions(SessionQuery()) == []
    assert await store.count_requests() == 2


async def test_filters_paging_and_the_spend_by_repository_and_branch(store: Store) -> None:
    await store.insert_requests(
        [
            entry(1, session="a", repo="acme/api", branch="main", cost_pico=10),
            entry(2, session="b", repo="acme/api", branch="feat", cost_pico=30, minutes=5),
            entry(
                3,
                session="c",
                repo="acme/web",
                branch="main",
                cost_pico=20,
                minutes=10,
                key="vk-b",
                team_id="team-b",
                client="codex_exec/0.171.0 (Debian 12.0.0; x86_64)",
            ),
            entry(4, session="d", cost_pico=5, minutes=20),
        ]
    )
    newest_first = [s["session_id"] for s in await store.list_sessions(SessionQuery())]
    assert newest_first == ["d", "c", "b", "a"]
    assert [s["session_id"] for s in await store.list_sessions(SessionQuery(limit=2, offset=1))] == ["c", "b"]
    assert [s["session_id"] for s in await store.list_sessions(SessionQuery(repo="acme/api"))] == ["b", "a"]
    assert [s["session_id"] for s in await store.list_sessions(SessionQuery(min_cost_pico=20))] == ["c", "b"]
    assert [s["session_id"] for s in await store.list_sessions(SessionQuery(client="codex_exec"))] == ["c"]
    assert [s["session_id"] for s in await store.list_sessions(SessionQuery(team_ids=("team-b",)))] == ["c"]
    since = T0 + timedelta(minutes=9)
    assert [s["session_id"] for s in await store.list_sessions(SessionQuery(since=since))] == ["d", "c"]
    until = T0 + timedelta(minutes=1)
    assert [s["session_id"] for s in await store.list_sessions(SessionQuery(until=until))] == ["a"]
    report = await store.session_spend(("repo", "branch"), SessionQuery())
    assert [(r["repo"], r["branch"], r["cost_pico"], r["sessions"]) for r in report] == [
        ("acme/api", "feat", 30, 1),
        ("acme/web", "main", 20, 1),
        ("acme/api", "main", 10, 1),
        (None, None, 5, 1),
    ]
    by_repo = await store.session_spend(("repo",), SessionQuery(team_ids=("team-a",)))
    assert [(r["repo"], r["cost_pico"], r["requests"]) for r in by_repo] == [("acme/api", 40, 2), (None, 5, 1)]


def test_client_and_version_from_the_agents_user_agents() -> None:
    assert client_of("claude-cli/2.1.197 (external, sdk-cli)") == ("claude-cli", "2.1.197")
    assert client_of("codex_exec/0.171.0 (Debian 12.0.0; x86_64) dumb (codex_exec; 0.171.0)") == (
        "codex_exec",
        "0.171.0",
    )
    assert client_of("GeminiCLI-tui/0.61.0/gemini-2.5-flash (linux; x64; terminal)") == ("GeminiCLI-tui", "0.61.0")
    assert client_of("curl") == ("curl", None)
    assert client_of("") == (None, None)


def test_fold_leaves_out_entries_of_no_session() -> None:
    assert fold([entry(1, session=None), entry(2, key=None)]) == []  # type: ignore[arg-type]


async def test_two_replicas_writing_the_same_sessions_at_once_lose_nothing() -> None:
    """Two stores on one PostgreSQL database (two replicas' writers), batches of the same sessions
    in opposite orders, at once: every request counted once."""
    name = "sluice_test_" + uuid.uuid4().hex[:8]
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    a, b = open_store(f"{PG}/{name}"), open_store(f"{PG}/{name}")
    try:
        await a.migrate()
        sessions = [f"s-{i}" for i in range(20)]

        def batch(replica: str, n: int) -> list[RequestLogEntry]:
            order = sessions if replica == "a" else sessions[::-1]
            return [entry(0, session=s, minutes=n, request_id=f"req-{replica}-{n}-{i}") for i, s in enumerate(order)]

        async def writer(store: Store, replica: str) -> None:
            for n in range(10):
                await store.insert_requests(batch(replica, n))

        await asyncio.gather(writer(a, "a"), writer(b, "b"))
        found = await a.list_sessions(SessionQuery())
        assert len(found) == 20 and {s["requests"] for s in found} == {20}
        assert {s["cost_pico"] for s in found} == {20 * 1000}
    finally:
        await a.close()
        await b.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
