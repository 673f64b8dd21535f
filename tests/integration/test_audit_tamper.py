"""Tampering with the audit log in a real SQLite file and a real PostgreSQL table: `sluice audit
verify` catches each case and names the record."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import yaml
from typer.testing import CliRunner

from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.settings import parse_config

PG = "postgresql://postgres@127.0.0.1:5432"
KEY = "audit-test-key-0123456789"


def write_config(tmp: Path, url: str) -> Path:
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump({"store": {"url": url}, "audit": {"hmac_key": KEY, "key_id": "k1"}}))
    return path


async def fill(url: str, n: int = 12) -> None:
    store = open_store(url)
    await store.migrate()
    log = AuditLog(parse_config({"audit": {"hmac_key": KEY}}).audit, store)
    for i in range(n):
        await log.append(
            "config_change", f"cli:user{i % 2}", {"id": f"budget-{i}", "after": {"max_limit": "30"}, "weight": 0.5}
        )
    await store.close()


def verify(config: Path, *extra: str) -> tuple[int, str]:
    from sluice.cli.main import app

    result = CliRunner().invoke(app, ["audit", "verify", "--config", str(config), *extra])
    return result.exit_code, result.output


SQL_TAMPERING: dict[str, tuple[list[str], str]] = {
    "edit a field": (["UPDATE audit_log SET actor = 'cli:mallory' WHERE seq = 5"], "record 5 was modified"),
    "delete a row": (["DELETE FROM audit_log WHERE seq = 7"], "record 7 is missing"),
    "insert a row": (
        [
            "UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 4",
            "UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1004",
            "INSERT INTO audit_log SELECT 4, ts, kind, actor, data, key_id, prev_mac, mac FROM audit_log WHERE seq = 3",
        ],
        "record 4 does not follow record 3",
    ),
    "swap two rows": (
        [
            "UPDATE audit_log SET seq = -1 WHERE seq = 8",
            "UPDATE audit_log SET seq = 8 WHERE seq = 9",
            "UPDATE audit_log SET seq = 9 WHERE seq = -1",
        ],
        "record 8 does not follow record 7",
    ),
}


@pytest.mark.parametrize("case", list(SQL_TAMPERING))
def test_sqlite_tampering_is_caught(tmp_path: Path, case: str) -> None:
    db = tmp_path / "audit.db"
    config = write_config(tmp_path, f"sqlite:///{db}")
    asyncio.run(fill(f"sqlite:///{db}"))
    assert verify(config) == (0, "ok: 12 record(s), chain intact\n")
    statements, words = SQL_TAMPERING[case]
    with sqlite3.connect(db) as conn:
        for sql in statements:
            conn.execute(sql)
    code, output = verify(config)
    assert code == 1 and words in output, output


@pytest.fixture
def pg_url() -> Iterator[str]:
    name = "sluice_audit_" + uuid.uuid4().hex[:8]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG + "/postgres")
        await conn.execute(sql)
        await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE "{name}" WITH (FORCE)'))


@pytest.mark.parametrize("case", list(SQL_TAMPERING))
def test_postgres_tampering_is_caught(tmp_path: Path, pg_url: str, case: str) -> None:
    config = write_config(tmp_path, pg_url)
    asyncio.run(fill(pg_url))
    assert verify(config)[0] == 0

    async def tamper(statements: list[str]) -> None:
        conn = await asyncpg.connect(pg_url)
        async with conn.transaction():
            for sql in statements:
                await conn.execute(sql)
        await conn.close()

    statements, words = SQL_TAMPERING[case]
    asyncio.run(tamper(statements))
    code, output = verify(config)
    assert code == 1 and words in output, output


def test_export_verifies_offline_and_edits_to_the_file_are_caught(tmp_path: Path) -> None:
    from sluice.cli.main import app

    url = f"sqlite:///{tmp_path / 'a.db'}"
    config = write_config(tmp_path, url)
    asyncio.run(fill(url))
    exported = CliRunner().invoke(app, ["audit", "export", "--config", str(config)]).output
    lines = exported.splitlines()
    # No gateway ever signed a checkpoint of this store (its records were written directly), so
    # the file carries none, and the export does not make a key up.
    assert len(lines) == 12 and KEY not in exported and "checkpoint" not in exported
    # The export itself is recorded: who read the log, how much of it.
    again = CliRunner().invoke(app, ["audit", "export", "--config", str(config), "--since", "13"]).output
    access = [orjson.loads(line) for line in again.splitlines()]
    assert access[0]["kind"] == "data_access" and access[0]["data"] == {
        "action": "audit_export",
        "since": 1,
        "records": 12,
    }
    export = tmp_path / "export.jsonl"
    export.write_text(exported)
    assert verify(config, "--file", str(export))[0] == 0
    export.write_text("\n".join(lines[:6] + lines[7:]) + "\n")  # record 7 left out
    code, output = verify(config, "--file", str(export))
    assert code == 1 and "record 7 is missing" in output


def test_configuration_changes_are_sealed_into_the_audit_log(tmp_path: Path) -> None:
    from sluice.app import build_services

    url = f"sqlite:///{tmp_path / 'g.db'}"
    doc = {
        "store": {"url": url},
        "audit": {"hmac_key": KEY},
        "request_log": {"spill_path": str(tmp_path / "spill.jsonl")},
        "budgets": [{"id": "b1", "team_id": "t1", "max_limit": 10, "reset_duration": "1d"}],
    }

    async def run() -> list[Any]:
        services = build_services(parse_config(doc))
        await services.start()
        changed = {**doc, "budgets": [{"id": "b1", "team_id": "t1", "max_limit": 20, "reset_duration": "1d"}]}
        await services.reload_file(parse_config(changed), "file:/etc/sluice.yaml")
        records = [r async for r in services.store.audit_records()]
        await services.stop()
        return records

    records = asyncio.run(run())
    assert [(r.kind, r.data["action"]) for r in records] == [("config_change", "create"), ("config_change", "update")]
    assert records[1].actor == "file:/etc/sluice.yaml"
    assert records[1].data["before"]["max_limit"] == "10" and records[1].data["after"]["max_limit"] == "20"
    code, output = verify(write_config(tmp_path, url))
    assert code == 0, output


def test_signed_checkpoints_reveal_truncation_and_replacement(tmp_path: Path) -> None:
    from sluice.cli.audit import keygen

    private, public = keygen()
    url = f"sqlite:///{tmp_path / 'cp.db'}"
    audit = {
        "hmac_key": KEY,
        "key_id": "k1",
        "checkpoint_key": private,
        "checkpoint_public_key": public,
        "checkpoint_path": str(tmp_path / "checkpoints.jsonl"),
        "checkpoint_every_records": 5,
    }
    config = tmp_path / "cp.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": url}, "audit": audit}))

    async def fill_signed(n: int, actor: str) -> None:
        store = open_store(url)
        await store.migrate()
        log = AuditLog(parse_config({"audit": audit}).audit, store)
        for i in range(n):
            await log.append("request", actor, {"n": i})
        await log.drain()
        await store.close()

    asyncio.run(fill_signed(12, "vk-a"))
    assert (tmp_path / "checkpoints.jsonl").read_text().count("\n") >= 2
    assert verify(config) == (0, "ok: 12 record(s), chain intact\n")
    with sqlite3.connect(tmp_path / "cp.db") as conn:  # cut the tail: the chain itself still looks fine
        conn.execute("DELETE FROM audit_log WHERE seq > 9")
    code, output = verify(config)
    assert code == 1 and "truncated: it ends at record 9" in output
    with sqlite3.connect(tmp_path / "cp.db") as conn:  # replace the whole log, even with the HMAC key
        conn.execute("DELETE FROM audit_log")
    checkpoints_before = (tmp_path / "checkpoints.jsonl").read_text()
    asyncio.run(fill_signed(12, "vk-forger"))
    (tmp_path / "checkpoints.jsonl").write_text(checkpoints_before)  # the forger cannot sign new ones
    code, output = verify(config)
    assert code == 1 and "differs from its signed checkpoint" in output


def test_two_writers_sharing_a_postgres_store_keep_one_chain(tmp_path: Path, pg_url: str) -> None:
    async def run() -> None:
        stores = [open_store(pg_url), open_store(pg_url)]
        await stores[0].migrate()
        logs = [AuditLog(parse_config({"audit": {"hmac_key": KEY}}).audit, s) for s in stores]
        await asyncio.gather(*(logs[i % 2].append("request", f"replica-{i % 2}", {"n": i}) for i in range(60)))
        for s in stores:
            await s.close()

    asyncio.run(run())
    assert verify(write_config(tmp_path, pg_url)) == (0, "ok: 60 record(s), chain intact\n")


def test_retention_prunes_and_the_rest_still_verifies(tmp_path: Path) -> None:
    from sluice.cli.main import app

    db = tmp_path / "r.db"
    url = f"sqlite:///{db}"
    config = write_config(tmp_path, url)
    asyncio.run(fill(url, 10))
    with sqlite3.connect(db) as conn:  # the first six records are 40 days old
        conn.execute("UPDATE audit_log SET ts = datetime(ts, '-40 days') WHERE seq <= 6")
    # (their MACs cover the old timestamps, so re-seal them the way they would have been written)
    asyncio.run(_reseal_prefix(url))
    assert verify(config)[0] == 0
    pruned = CliRunner().invoke(app, ["audit", "prune", "--config", str(config), "--keep-days", "30"])
    assert pruned.exit_code == 0 and "pruned 6 record(s)" in pruned.output
    assert verify(config) == (0, "ok: 5 record(s), chain intact\n")  # 7..10 and the prune's own record
    with sqlite3.connect(db) as conn:  # deleting more of the prefix is still caught
        conn.execute("DELETE FROM audit_log WHERE seq = 7")
    assert "record 7 is missing" in verify(config)[1]


def test_a_forged_retention_anchor_is_caught(tmp_path: Path) -> None:
    from sluice.cli.main import app

    db = tmp_path / "f.db"
    url = f"sqlite:///{db}"
    config = write_config(tmp_path, url)
    asyncio.run(fill(url, 6))
    assert CliRunner().invoke(app, ["audit", "prune", "--config", str(config), "--keep-days", "1"]).exit_code == 0
    with sqlite3.connect(db) as conn:  # everything is recent: nothing was pruned, no anchor yet
        assert conn.execute("SELECT count(*) FROM audit_anchor").fetchone()[0] == 0
        # Someone cuts off the first three records and invents an anchor without the key.
        mac3 = conn.execute("SELECT mac FROM audit_log WHERE seq = 3").fetchone()[0]
        conn.execute("DELETE FROM audit_log WHERE seq <= 3")
        conn.execute(
            "INSERT INTO audit_anchor VALUES (1, ?, ?)",
            (orjson.dumps({"seq": 3, "mac": mac3, "ts": "x", "key_id": "k1"}).decode(), "0" * 64),
        )
    assert "the retention anchor was altered" in verify(config)[1]


async def _reseal_prefix(url: str) -> None:
    """Rewrites the chain after back-dating records in a test (what an honest gateway would
    have written at those times)."""
    from sluice.audit.chain import make_record
    from sluice.storage.backends.sql_tables import audit_log

    store = open_store(url)
    records = [r async for r in store.audit_records()]
    prev = None
    resealed = []
    for r in records:
        prev = make_record(KEY.encode(), r.key_id, prev, r.ts, r.kind, r.actor, r.data)
        resealed.append(prev)
    async with store.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(audit_log.delete())
    await store.append_audit(resealed)
    await store.close()


def test_postgres_truncation_is_caught_by_checkpoints(tmp_path: Path, pg_url: str) -> None:
    from sluice.cli.audit import keygen

    private, public = keygen()
    audit = {
        "hmac_key": KEY,
        "checkpoint_key": private,
        "checkpoint_public_key": public,
        "checkpoint_path": str(tmp_path / "cp.jsonl"),
        "checkpoint_every_records": 4,
    }
    config = tmp_path / "pg.yaml"
    config.write_text(yaml.safe_dump({"store": {"url": pg_url}, "audit": audit}))

    async def fill_and_cut() -> None:
        store = open_store(pg_url)
        await store.migrate()
        log = AuditLog(parse_config({"audit": audit}).audit, store)
        for i in range(10):
            await log.append("request", "vk", {"n": i})
        await log.drain()
        await store.close()

    asyncio.run(fill_and_cut())
    assert verify(config)[0] == 0

    async def truncate() -> None:
        conn = await asyncpg.connect(pg_url)
        await conn.execute("DELETE FROM audit_log WHERE seq > 6")
        await conn.close()

    asyncio.run(truncate())
    code, output = verify(config)
    assert code == 1 and "truncated: it ends at record 6" in output


async def test_append_all_seals_its_records_in_order_on_one_chain(tmp_path: Path) -> None:
    """Several records of one request (a guardrail's decisions) through one call: durable, in order,
    interleaved correctly with single appends; a log without a key records nothing."""
    from sluice.audit.chain import verify as verify_records

    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    await store.migrate()
    config = parse_config({"audit": {"hmac_key": KEY}}).audit
    log = AuditLog(config, store)
    single = log.append("request", "vk-a", {"n": 0})
    many = log.append_all("guardrail", "vk-a", [{"n": 1}, {"n": 2}, {"n": 3}])
    await asyncio.gather(single, many)
    assert [r.seq for r in await log.append_all("guardrail", "vk-b", [{"n": 4}])] == [5]
    records = [r async for r in store.audit_records()]
    assert [r.data["n"] for r in records] == [0, 1, 2, 3, 4]
    assert verify_records(records, config.keys()).ok
    assert await AuditLog(parse_config({}).audit, store).append_all("guardrail", "vk-a", [{"n": 5}]) == []
    await store.close()
