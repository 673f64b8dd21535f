"""Secrets inside configuration objects besides provider keys: a provider's extra headers, an MCP
server's URL when it carries credentials (user info, a query token), its headers and environment.
Write-only and sealed: never returned by the API, never in configuration events or the audit log,
never exported, never logged; export-then-plan shows no change."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sluice.admin.declarative import declared, export, plan
from sluice.app import Services
from sluice.providers.http_provider import HttpProvider
from tests.admin.conftest import Client

HEADER = "hdr-PLAIN-0123456789"
URL_PASSWORD, URL_TOKEN = "pw-PLAIN-0123456789", "tok-PLAIN-0123456789"
MCP_HEADER, MCP_ENV = "mcp-hdr-PLAIN-0123456789", "mcp-env-PLAIN-0123456789"
PLAINS = (HEADER, URL_PASSWORD, URL_TOKEN, MCP_HEADER, MCP_ENV)


def _clean(text: str | bytes) -> bool:
    data = text.encode() if isinstance(text, str) else text
    return not any(p.encode() in data for p in PLAINS)


async def test_config_object_secrets_are_write_only_and_sealed(
    admin: tuple[Services, Client], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("SLUICE_SECRETS_KEY", "a passphrase for tests")
    services, c = admin
    provider = {"name": "openai", "base_url": "http://127.0.0.1:9/v1", "headers": {"x-upstream-token": HEADER}}
    r = await c.put("/api/providers/openai", json=provider)
    assert r.status == 200 and r.json()["body"]["headers"] == {"x-upstream-token": "(encrypted)"}, r.body
    server = {
        "name": "remote",
        "transport": "http",
        "url": f"http://svc:{URL_PASSWORD}@127.0.0.1:9/mcp?token={URL_TOKEN}",
        "headers": {"Authorization": f"Bearer {MCP_HEADER}"},
    }
    r = await c.post("/api/mcp-servers", json=server)
    assert r.status == 201 and r.json()["body"]["url"] == "(encrypted)", r.body
    plain_url = {"name": "open", "transport": "http", "url": "http://127.0.0.1:9/mcp"}
    r = await c.post("/api/mcp-servers", json=plain_url)
    assert r.json()["body"]["url"] == "http://127.0.0.1:9/mcp"  # no credentials: shown as it is
    stdio = {"name": "tool", "transport": "stdio", "command": "x", "env": {"TOKEN": MCP_ENV, "REF": "env.SOME_VAR"}}
    r = await c.post("/api/mcp-servers", json=stdio)
    assert r.json()["body"]["env"] == {"TOKEN": "(encrypted)", "REF": "env.SOME_VAR"}

    # Live: the gateway uses the plain values.
    live = services.engine.providers["openai"]
    assert isinstance(live, HttpProvider) and live._extra_headers == {"x-upstream-token": HEADER}
    servers = {s.name: s for s in services.live.config.mcp.servers}
    assert servers["remote"].url == server["url"]

    # Nowhere else: API reads, configuration events, the audit log, the store's bytes.
    for path in ("/api/providers", "/api/providers/openai", "/api/mcp-servers", "/api/mcp-servers/remote"):
        assert _clean((await c.get(path)).body), path
    events = await c.get("/api/config/events")
    assert events.status == 200 and _clean(events.body) and b"enc:" not in events.body
    records = [r async for r in services.store.audit_records()]
    assert records and _clean(str([r.data for r in records])) and "enc:" not in str([r.data for r in records])
    stored = await services.store.list_objects()
    assert _clean(str([o.body for o in stored]))
    assert _clean((tmp_path / "sluice.db").read_bytes())

    # Exported as placeholders (not even sealed), and the export plans as no change.
    doc = export(stored)
    assert _clean(str(doc)) and "enc:" not in str(doc)
    assert plan(stored, declared(doc, stored)) == []
    # Writing the placeholder back through the API keeps the stored secret.
    r = await c.put("/api/providers/openai", json={**provider, "headers": {"x-upstream-token": "(encrypted)"}})
    assert r.status == 200
    live = services.engine.providers["openai"]
    assert isinstance(live, HttpProvider) and live._extra_headers == {"x-upstream-token": HEADER}
    # ... but a placeholder with nothing stored behind it is refused, not stored as a value.
    r = await c.post("/api/mcp-servers", json={**stdio, "name": "new", "env": {"TOKEN": "(encrypted)"}})
    assert r.status == 422
    assert _clean(caplog.text)
