"""Retention and erasure: content tombstoned (by age, or one person's on request) while every
record keeps its seal and the chain verifies; request-log rows deleted by age; content sealed
whole by an earlier version left alone; and a tombstone that lies about the content fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sluice.app import open_store
from sluice.audit.chain import make_record, verify
from sluice.audit.log import AuditLog
from sluice.audit.retention import Retention, tombstone
from sluice.cli.main import app
from sluice.settings import parse_config
from sluice.storage.backends.sql import SqlStore
from sluice.storage.backends.sql_retention import SqlRetention
from sluice.storage.records import AuditRecord, RequestLogEntry, VirtualKey

AUDIT_KEY = "retention-hmac-key-0123456789abcdef"
KEYS = {"k1": AUDIT_KEY.encode()}


def _content(text: str) -> dict[str, Any]:
    return {"content": {"request": f"prompt {text}", "response": f"answer {text}"}, "content_sealing": "sha256"}


def _data(end_user: str, key: str, text: str, *, sealed: bool = True) -> dict[str, Any]:
    data = {"request_id": f"req-{text}", "user": end_user, "virtual_key": key, "model": "m", **_content(text)}
    if not sealed:
        del data["content_sealing"]
    return data


def _chain(rows: list[tuple[datetime, dict[str, Any]]]) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    for ts, data in rows:
        out.append(make_record(KEYS["k1"], "k1", out[-1] if out else None, ts, "request", data["virtual_key"], data))
    return out


def _config(tmp_path: Path, **retention: Any) -> Any:
    return parse_config(
        {
            "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
            "audit": {"hmac_key": AUDIT_KEY, "checkpoints": False},
            "retention": retention,
        }
    )


async def _setup(tmp_path: Path, rows: list[tuple[datetime, dict[str, Any]]], **retention: Any) -> tuple[Any, ...]:
    cfg = _config(tmp_path, **retention)
    store = open_store(cfg.store.url)
    assert isinstance(store, SqlStore)
    await store.migrate()
    if rows:
        await store.append_audit(_chain(rows))
    audit = AuditLog(cfg.audit, store)
    return cfg, store, Retention(cfg, store, SqlRetention(store), audit)


async def _records(store: SqlStore) -> list[AuditRecord]:
    return [r async for r in store.audit_records()]


def test_tombstoned_content_keeps_the_seal_and_a_lying_tombstone_fails() -> None:
    now = datetime.now(UTC)
    (record,) = _chain([(now, _data("alice", "vk-a", "one"))])
    stone = tombstone(record.data["content"], now, "erasure")
    erased = _replace(record, {**record.data, "content": stone})
    assert verify([erased], KEYS).ok
    wrong = _replace(record, {**record.data, "content": {**stone, "sha256": "0" * 64}})
    assert not verify([wrong], KEYS).ok
    edited = _replace(record, {**record.data, "content": {"request": "prompt one", "response": "forged"}})
    assert not verify([edited], KEYS).ok
    unmarked = _replace(record, {k: v for k, v in record.data.items() if k != "content_sealing"})
    assert not verify([unmarked], KEYS).ok  # the marker is sealed too


def _replace(record: AuditRecord, data: dict[str, Any]) -> AuditRecord:
    return AuditRecord(
        record.seq, record.ts, record.kind, record.actor, data, record.key_id, record.prev_mac, record.mac
    )


async def _keys(store: SqlStore, owners: dict[str, str]) -> None:
    for key_id, user in owners.items():
        await store.create_key(VirtualKey(id=key_id, name=key_id, key_hash=key_id * 4, key_hint="sk", user_id=user))


async def test_erasing_one_person_leaves_others_and_the_chain_verifies(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    rows = [
        (now, _data("device-1", "vk-a", "a1")),
        (now, _data("device-2", "vk-b", "b1")),
        (now, _data("device-1", "vk-a2", "a2")),
        (now, {"request_id": "req-x", "user": "x", "virtual_key": "vk-a", "model": "m"}),  # nothing captured
    ]
    _, store, retention = await _setup(tmp_path, rows)
    try:
        # Erasure goes by the Sluice user's keys (the caller-supplied end-user id is not trusted for it).
        await _keys(store, {"vk-a": "alice", "vk-a2": "alice", "vk-b": "bob"})
        erased = await retention.erase_person(user="alice", actor="cli:dpo", reason="ticket 42")
        assert erased.records == [1, 3] and erased.legacy == 0
        records = await _records(store)
        assert verify(records, KEYS).ok, verify(records, KEYS)
        by_seq = {r.seq: r for r in records}
        for seq in (1, 3):
            stone = by_seq[seq].data["content"]
            assert stone["erased"] is True and stone["reason"] == "erasure" and "prompt" not in str(stone)
            assert by_seq[seq].data["user"] == "device-1" and by_seq[seq].mac == _chain(rows)[seq - 1].mac
        assert by_seq[2].data["content"]["request"] == "prompt b1"
        note = by_seq[5]
        assert note.kind == "data_access" and note.actor == "cli:dpo"
        assert note.data["action"] == "content_erasure" and note.data["records"] == [1, 3]
        assert note.data["reason"] == "ticket 42" and note.data["virtual_keys"] == ["vk-a", "vk-a2"]
        again = await retention.erase_person(key="vk-a2", actor="cli:dpo")
        assert again.records == []  # already erased
        by_end_user = await retention.erase_person(end_user="device-2", actor="cli:dpo")
        assert by_end_user.records == [2]
        assert verify(await _records(store), KEYS).ok
    finally:
        await store.close()


async def test_content_retention_tombstones_only_old_content(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=40), now - timedelta(days=5)
    rows = [
        (old, _data("alice", "vk-a", "old1")),
        (old, _data("bob", "vk-b", "old2")),
        (recent, _data("c", "vk-c", "new")),
    ]
    _, store, retention = await _setup(tmp_path, rows, content_days=30)
    try:
        done = await retention.run_once()
        assert done == {"content": 2, "content_legacy": 0, "request_log": 0}
        records = await _records(store)
        assert verify(records, KEYS).ok
        assert [("erased" in r.data.get("content", {})) for r in records[:3]] == [True, True, False]
        assert records[3].data == {
            "action": "content_retention", "keep_days": 30, "records": 2, "first_seq": 1, "last_seq": 2,
            "legacy_left": 0,
        }  # fmt: skip
        assert (await retention.run_once())["content"] == 0  # the next day starts where this one stopped
    finally:
        await store.close()


async def test_content_sealed_whole_by_an_earlier_version_is_left_alone(tmp_path: Path) -> None:
    old = datetime.now(UTC) - timedelta(days=90)
    _, store, retention = await _setup(
        tmp_path, [(old, _data("alice", "vk-a", "legacy", sealed=False))], content_days=1
    )
    try:
        erased = await retention.erase_person(key="vk-a", actor="cli:dpo")
        assert erased.records == [] and erased.legacy == 1
        assert (await retention.run_once())["content_legacy"] == 1
        records = await _records(store)
        assert records[0].data["content"]["request"] == "prompt legacy" and verify(records, KEYS).ok
    finally:
        await store.close()


async def test_request_log_retention_deletes_old_rows_only(tmp_path: Path) -> None:
    _, store, retention = await _setup(tmp_path, [], request_log_days=30)
    now = datetime.now(UTC)
    try:
        entries = [
            RequestLogEntry(request_id=f"r{i}", ts=ts, path="/v1/messages", surface="anthropic_messages",
                            status=200, decision="allow")
            for i, ts in enumerate([now - timedelta(days=31), now - timedelta(days=45), now - timedelta(days=1)])
        ]  # fmt: skip
        await store.insert_requests(entries)
        done = await retention.run_once()
        assert done["request_log"] == 2
        assert [r["request_id"] for r in await store.recent_requests()] == ["r2"]
        (note,) = await _records(store)
        assert note.data == {"action": "request_log_retention", "keep_days": 30, "rows": 2}
    finally:
        await store.close()


async def test_erasure_and_retention_reach_the_request_log_and_the_session_ledger(tmp_path: Path) -> None:
    """Fails on the code before: the log kept the end-user id and the ledger kept its sessions."""
    from sluice.storage.records import SessionQuery

    _, store, retention = await _setup(tmp_path, [], request_log_days=30)
    now = datetime.now(UTC)
    try:
        await _keys(store, {"vk-a": "alice", "vk-b": "bob"})
        entries = [
            RequestLogEntry(request_id=f"r{i}", ts=now - timedelta(days=days), path="/v1/messages",
                            surface="anthropic_messages", status=200, decision="allow", virtual_key_id=key,
                            session_id=f"s-{key}-{days > 30}", user_id=f"{key}-device", cwd=f"/home/{key}")
            for i, (key, days) in enumerate([("vk-a", 1), ("vk-a", 2), ("vk-b", 1), ("vk-b", 40)])
        ]  # fmt: skip
        await store.insert_requests(entries)
        erased = await retention.erase_person(user="alice", actor="cli:dpo")
        assert (erased.log_rows, erased.sessions) == (2, 1)
        note = (await _records(store))[-1]
        assert note.data["request_log_rows"] == 2 and note.data["sessions"] == 1
        sessions = {s["virtual_key_id"]: s for s in await store.list_sessions(SessionQuery())}
        assert (sessions["vk-a"]["end_user"], sessions["vk-a"]["cwd"]) == (None, None)
        assert sessions["vk-b"]["end_user"] == "vk-b-device"
        assert (await retention.run_once())["request_log"] == 1
        left = await store.list_sessions(SessionQuery())
        assert sorted(s["session_id"] for s in left) == ["s-vk-a-False", "s-vk-b-False"]
    finally:
        await store.close()


def test_cli_erase_then_verify(tmp_path: Path) -> None:
    import asyncio

    now = datetime.now(UTC)

    async def seed() -> None:
        _, store, _ = await _setup(tmp_path, [(now, _data("alice", "vk-a", "x")), (now, _data("bob", "vk-b", "y"))])
        await store.close()

    asyncio.run(seed())
    config = tmp_path / "sluice.yaml"
    config.write_text(
        f"store: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\naudit: {{hmac_key: {AUDIT_KEY}, checkpoints: false}}\n"
    )
    runner = CliRunner()
    erased = runner.invoke(app, ["audit", "erase", "--config", str(config), "--key", "vk-b", "--reason", "DSR-7"])
    assert erased.exit_code == 0, erased.output
    assert "erased the content of 1 record(s)" in erased.output
    assert "blanked the end-user id and working directory of 0 request-log row(s)" in erased.output
    verified = runner.invoke(app, ["audit", "verify", "--config", str(config)])
    assert verified.exit_code == 0 and "chain intact" in verified.output, verified.output
    nobody = runner.invoke(app, ["audit", "erase", "--config", str(config)])
    assert nobody.exit_code == 2
    nothing = runner.invoke(app, ["audit", "retention", "--config", str(config)])
    assert nothing.exit_code == 2 and "neither" in nothing.output


@pytest.mark.parametrize("bad", [{"content_days": 0}, {"request_log_days": -1}, {"audit_days": 3}])
def test_retention_settings_are_checked(tmp_path: Path, bad: dict[str, Any]) -> None:
    from sluice.settings import ConfigError

    with pytest.raises(ConfigError):
        _config(tmp_path, **bad)
