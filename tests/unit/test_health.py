"""`/healthz` and `/readyz`: what each check catches, that a probe burst costs one round of
checks, and that a failure never shows a secret."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluice.app import Services, build_services
from sluice.http.asgi import Message
from sluice.http.health import Readiness, alive, scrub
from sluice.settings import parse_config
from tests.support import free_port

REDIS_DB = 9


async def _get(route: Any) -> tuple[int, dict[str, Any]]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/readyz", "headers": []}
    await route(scope, receive, send)
    return sent[0]["status"], orjson.loads(sent[1]["body"])


def _services(tmp_path: Path, **overrides: Any) -> Services:
    doc: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp_path / 'sluice.db'}"},
        "request_log": {"spill_path": str(tmp_path / "spill.jsonl")},
        "governance": {"spend_journal_path": str(tmp_path / "journal.jsonl")},
        "audit": {"hmac_key": "k" * 32, "checkpoint_path": str(tmp_path / "cp.jsonl")},
    }
    doc.update(overrides)
    return build_services(parse_config(doc))


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    svc = _services(tmp_path)
    await svc.store.migrate()
    yield svc
    await svc.store.close()


async def test_alive_answers_without_touching_anything() -> None:
    status, body = await _get(alive)
    assert (status, body) == (200, {"status": "ok"})


async def test_ready_when_every_check_passes(services: Services) -> None:
    status, body = await _get(Readiness(services))
    assert status == 200, body
    assert body == {
        "status": "ready",
        "checks": {"config": "ok", "store": "ok", "redis": "not configured", "audit": "ok", "local_files": "ok"},
    }


async def test_redis_ready_when_it_answers(tmp_path: Path) -> None:
    svc = _services(tmp_path, governance={"backend": "redis", "redis_url": f"redis://127.0.0.1:6379/{REDIS_DB}"})
    await svc.store.migrate()
    try:
        status, body = await _get(Readiness(svc))
    finally:
        await svc.store.close()
    assert status == 200 and body["checks"]["redis"] == "ok", body


async def test_redis_down_is_named_without_its_password(tmp_path: Path) -> None:
    url = f"redis://:s3cret-redis-pw@127.0.0.1:{free_port()}/{REDIS_DB}"  # nothing listens there
    svc = _services(tmp_path, governance={"backend": "redis", "redis_url": url})
    await svc.store.migrate()
    try:
        status, body = await _get(Readiness(svc))
    finally:
        await svc.store.close()
    assert status == 503
    assert body["failed"] == ["redis"] and body["status"] == "unready"
    assert body["checks"]["redis"] == "unreachable (RedisUnavailable)"
    assert body["checks"]["store"] == "ok"
    assert "s3cret" not in orjson.dumps(body).decode()


async def test_store_down_is_named_without_the_dsn(tmp_path: Path) -> None:
    dsn = f"postgresql://sluice:hunter2-pg-pw@127.0.0.1:{free_port()}/sluice"  # nothing listens there
    svc = _services(tmp_path, store={"url": dsn})
    try:
        status, body = await _get(Readiness(svc))
    finally:
        await svc.store.close()
    assert status == 503
    assert set(body["failed"]) == {"store", "audit"}  # the audit chain lives in the store too
    text = orjson.dumps(body).decode()
    assert "hunter2" not in text and "127.0.0.1" not in text and "postgresql" not in text


async def test_a_hung_store_fails_the_probe_in_time(services: Services) -> None:
    async def hang() -> int:
        await asyncio.sleep(60)
        return 0

    services.store.keys_version = hang  # type: ignore[method-assign]
    readiness = Readiness(services, timeout_s=0.05)
    status, body = await asyncio.wait_for(_get(readiness), timeout=2)
    assert status == 503 and body["failed"] == ["store"]
    assert body["checks"]["store"] == "no answer within 0.05 s"


async def test_a_probe_burst_runs_one_round_of_checks(services: Services) -> None:
    calls = 0
    real = services.store.keys_version

    async def counted() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)  # long enough for the whole burst to arrive during the round
        return await real()

    services.store.keys_version = counted  # type: ignore[method-assign]
    now = [100.0]
    readiness = Readiness(services, clock=lambda: now[0])
    answers = await asyncio.gather(*(_get(readiness) for _ in range(200)))
    assert {status for status, _ in answers} == {200}
    assert calls == 1 and readiness.rounds == 1
    now[0] += 0.5  # within the second: still the cached answer
    await _get(readiness)
    assert calls == 1
    now[0] += 0.6  # past it: one new round
    await asyncio.gather(*(_get(readiness) for _ in range(50)))
    assert calls == 2 and readiness.rounds == 2


async def test_a_failure_is_cached_too_and_recovery_is_seen(services: Services) -> None:
    broken = True
    real = services.store.keys_version

    async def flaky() -> int:
        if broken:
            raise OSError("connection refused to postgresql://u:pw@db")
        return await real()

    services.store.keys_version = flaky  # type: ignore[method-assign]
    now = [0.0]
    readiness = Readiness(services, clock=lambda: now[0])
    assert (await _get(readiness))[0] == 503
    broken = False
    assert (await _get(readiness))[0] == 503  # the same second: the cached verdict
    now[0] += 1.0
    assert (await _get(readiness))[0] == 200


async def test_unwritable_checkpoint_and_spill_are_named(tmp_path: Path) -> None:
    gone = tmp_path / "no-such-dir"  # root may write anywhere: a missing directory fails for anyone
    svc = _services(
        tmp_path,
        audit={"hmac_key": "k" * 32, "checkpoint_path": str(gone / "cp.jsonl")},
        request_log={"spill_path": str(gone / "spill.jsonl")},
    )
    await svc.store.migrate()
    try:
        status, body = await _get(Readiness(svc))
    finally:
        await svc.store.close()
    assert status == 503 and body["failed"] == ["audit", "local_files"]
    assert body["checks"]["audit"] == "checkpoint file not writable"
    assert body["checks"]["local_files"] == "request log spill directory not writable"


async def test_draining_answers_503_without_checking(services: Services) -> None:
    readiness = Readiness(services)
    readiness.draining = True
    status, body = await _get(readiness)
    assert status == 503 and body["status"] == "draining" and readiness.rounds == 0


def test_scrub_removes_url_credentials() -> None:
    assert scrub("cannot reach postgresql+asyncpg://user:pa:ss@db:5432/x") == (
        "cannot reach postgresql+asyncpg://***@db:5432/x"
    )
    assert scrub("redis://:pw@r/0 and http://h/") == "redis://***@r/0 and http://h/"
