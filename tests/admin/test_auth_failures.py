"""Authenticate before reading the body, bounded headers, and authentication failures throttled
per address and recorded in the audit log (counted, not one record each) on every surface: the
inference routes, /v1/models, /mcp, /api and /scim/v2."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from sluice.app import Services
from tests.admin.conftest import Client, admin_config, start

SCIM_TOKEN = "scim-token-for-tests-0123456789"
CHAT = {"model": "fake/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def config(tmp_path: Path, **guard: Any) -> dict[str, Any]:
    cfg = admin_config(tmp_path)
    cfg["auth"] = {"scim": {"token_sha256": [hashlib.sha256(SCIM_TOKEN.encode()).hexdigest()]}}
    if guard:
        cfg["auth"]["guard"] = guard
    # A server that never answers: /mcp authenticates before it needs one.
    cfg["mcp"] = {"servers": [{"name": "srv", "transport": "http", "url": "http://127.0.0.1:9/mcp"}]}
    return cfg


async def failures(services: Services) -> list[dict[str, Any]]:
    assert services.guard is not None
    await services.guard.flush(force=True)
    await services.audit.drain()
    return [r.data async for r in services.store.audit_records() if r.kind == "auth_failure"]


async def chunked(
    c: Client, path: str, headers: list[tuple[bytes, bytes]], chunks: int, size: int = 64 * 1024
) -> tuple[int, dict[str, str], int]:
    """POSTs a body of `chunks` chunks; (status, headers, chunks the gateway read)."""
    read = 0
    out: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read >= chunks:
            return {"type": "http.disconnect"}
        read += 1
        return {"type": "http.request", "body": b"x" * size, "more_body": read < chunks}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
    }
    await c.app(scope, receive, send)
    return out["status"], out["headers"], read


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/messages",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/bedrock/model/anthropic.claude-haiku-4-5-20251001-v1:0/invoke",
    ],
)
async def test_a_refused_caller_sends_at_most_a_small_body(tmp_path: Path, path: str) -> None:
    services, c = await start(config(tmp_path))
    try:
        wrong = [(b"authorization", b"Bearer sk-sluice-wrong")]
        status, headers, read = await chunked(c, path, wrong, chunks=64)  # 4 MiB
        assert status == 401
        assert read <= 2, f"read {read} chunks of 64 KiB before refusing"  # 64 KiB, and the one past it
        assert headers.get("connection") == "close"  # the unread rest is never taken for a request
        # A small refused body is read whole, so the connection can go on.
        status, headers, read = await chunked(c, path, wrong, chunks=1, size=1000)
        assert status == 401 and "connection" not in headers
    finally:
        await services.stop()


async def test_headers_are_bounded(tmp_path: Path) -> None:
    services, c = await start(config(tmp_path))
    try:
        big = await c.post("/v1/chat/completions", json=CHAT, headers={"x-junk": "a" * 17_000})
        assert big.status == 431 and "x-junk" in big.json()["error"]["message"]
        many = {f"x-junk-{n}": "a" * 8000 for n in range(9)}  # each under the line limit, 72 KB in all
        assert (await c.post("/v1/chat/completions", json=CHAT, headers=many)).status == 431
        assert (await c.get("/api/keys", headers=many)).status == 431  # every surface
        fine = await c.post("/v1/chat/completions", json=CHAT, headers={"x-fine": "a" * 4000})
        assert fine.status == 401  # (no key sent) an ordinary request is not refused for its headers
    finally:
        await services.stop()


async def test_failures_are_throttled_per_address(tmp_path: Path) -> None:
    services, c = await start(config(tmp_path, failures_burst=5, failures_per_minute=6))
    try:
        replies = [await c.post("/v1/chat/completions", json=CHAT, token="sk-sluice-guess") for _ in range(8)]
        assert [r.status for r in replies] == [401] * 5 + [429] * 3
        assert 1 <= int(replies[-1].headers["retry-after"]) <= 10  # one token back at 6 a minute
        assert replies[-1].json()["error"]["code"] == "rate_limit_exceeded"  # in the OpenAI shape
        # The address is throttled on every surface, the admin API included.
        assert (await c.get("/api/keys", token="not-a-token")).status == 429
        assert (await c.get("/v1/models", token="sk-sluice-guess")).status == 429
        assert (await c.post("/v1/chat/completions", json=CHAT, token=None)).status == 429
        # A valid key still gets in from there: colleagues behind the same NAT are not locked out.
        services.guard.config = services.guard.config.model_copy(update={"throttle": False})  # type: ignore[union-attr]
        made = await c.post("/api/keys", json={"id": "vk", "grants": [{"provider": "fake"}]})
        services.guard.config = services.guard.config.model_copy(update={"throttle": True})  # type: ignore[union-attr]
        await services.keys.reload()
        assert (await c.post("/v1/chat/completions", json=CHAT, token=made.json()["secret"])).status == 200
        assert (await c.get("/v1/models", token=made.json()["secret"])).status == 200
        assert (await c.post("/v1/chat/completions", json=CHAT, token="sk-sluice-guess")).status == 429
    finally:
        await services.stop()


async def test_a_flood_of_failures_is_counted_not_written_one_by_one(tmp_path: Path) -> None:
    services, c = await start(config(tmp_path, throttle=False))
    try:
        for _ in range(300):
            assert (await c.post("/v1/chat/completions", json=CHAT, token="sk-sluice-guess")).status == 401
        found = [d for d in await failures(services) if d["surface"] == "openai_chat"]
        assert len(found) <= 2, found  # the first at once, the repeats as one counted record
        assert sum(d["count"] for d in found) == 300
        assert {d["reason"] for d in found} == {"invalid_credential"} and found[0]["address"] == "127.0.0.1"
    finally:
        await services.stop()


async def test_every_surface_records_its_failures(tmp_path: Path) -> None:
    services, c = await start(config(tmp_path, throttle=False))
    try:
        assert (await c.post("/v1/messages", json=CHAT, token="sk-sluice-guess")).status == 401
        assert (await c.get("/v1/models", token="sk-sluice-guess")).status == 401
        assert (await c.post("/mcp", json={}, token="sk-sluice-guess")).status == 401
        assert (await c.get("/api/keys", token="not-a-token")).status == 401
        assert (await c.get("/api/keys", token=None)).status == 401
        assert (await c.get("/scim/v2/Users", token="wrong")).status == 401
        found = {(d["surface"], d["reason"]) for d in await failures(services)}
        assert {
            ("anthropic_messages", "invalid_credential"),
            ("openai_chat", "invalid_credential"),  # /v1/models without anthropic-version
            ("mcp", "invalid_credential"),
            ("api", "invalid_credential"),
            ("api", "missing_credential"),
            ("scim", "invalid_credential"),
        } <= found, found
        # A valid key is neither throttled nor recorded as a failure.
        made = await c.post("/api/keys", json={"id": "vk", "grants": [{"provider": "fake"}]})
        before = len(await failures(services))
        assert (await c.post("/v1/chat/completions", json=CHAT, token=made.json()["secret"])).status == 200
        assert len(await failures(services)) == before
    finally:
        await services.stop()
