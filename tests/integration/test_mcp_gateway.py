"""The MCP gateway with the official `mcp` client SDK, through Sluice, to the real
@modelcontextprotocol/server-everything from npm (pinned in tests/e2e/package.json)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from tests.support import GatewayThread

EVERYTHING = Path(__file__).parents[1] / "e2e" / "node_modules" / "@modelcontextprotocol" / "server-everything"
ALICE, BOB, NOBODY = "sk-sluice-mcp-alice-0000000000", "sk-sluice-mcp-bob-00000000000", "sk-sluice-mcp-none-0000000000"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    if not (EVERYTHING / "dist" / "index.js").exists():
        pytest.fail("server-everything is not installed: run `make e2e-deps` (make test does it)")
    config: dict[str, Any] = {
        "mcp": {
            "servers": [
                {
                    "name": "everything",
                    "transport": "stdio",
                    "command": "node",
                    "args": [str(EVERYTHING / "dist" / "index.js"), "stdio"],
                    "env": {"SECRET_TOKEN": "upstream-credential-stays-here"},
                },
                {"name": "dead", "transport": "stdio", "command": "/nonexistent/server"},
            ],
            "tool_groups": [{"name": "math", "tools": ["everything/get-sum"]}],
        },
        "virtual_keys": [
            {"id": "vk-alice", "value": ALICE, "mcp": {"tools": ["everything/echo"], "tool_groups": ["math"]}},
            {"id": "vk-bob", "value": BOB, "mcp": {"tools": ["everything/echo"]}},
            {"id": "vk-none", "value": NOBODY},
        ],
        "audit": {"hmac_key": "mcp-audit-key-0123456789"},
    }
    with GatewayThread(config, tmp_path_factory.mktemp("mcp")) as gw:
        yield gw


def connect(gateway: GatewayThread, key: str) -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=60))
    return http, Client(streamable_http_client(gateway.base_url + "/mcp", http_client=http), mode="legacy", cache=None)


async def tools_of(gateway: GatewayThread, key: str) -> list[str]:
    http, client = connect(gateway, key)
    async with http, client:
        return sorted(t.name for t in (await client.list_tools()).tools)


async def test_each_key_sees_only_its_tools(gateway: GatewayThread) -> None:
    assert await tools_of(gateway, ALICE) == ["everything__echo", "everything__get-sum"]
    assert await tools_of(gateway, BOB) == ["everything__echo"]
    assert await tools_of(gateway, NOBODY) == []  # no mcp block: default deny


async def test_calls_go_through_and_denials_are_refused_and_recorded(gateway: GatewayThread) -> None:
    http, alice = connect(gateway, ALICE)
    async with http, alice:
        echoed = await alice.call_tool("everything__echo", {"message": "through sluice"})
        assert "through sluice" in echoed.content[0].text  # type: ignore[union-attr]
        summed = await alice.call_tool("everything__get-sum", {"a": 2, "b": 40})
        assert "42" in summed.content[0].text  # type: ignore[union-attr]
    http, bob = connect(gateway, BOB)
    async with http, bob:
        with pytest.raises(MCPError) as denied:
            await bob.call_tool("everything__get-sum", {"a": 1, "b": 1})
        assert "Unknown tool" in denied.value.error.message
    calls = gateway.services.mcp.calls
    assert [(c["kind"], c["virtual_key"], c["tool"], c["outcome"]) for c in calls[-3:]] == [
        ("mcp_call", "vk-alice", "echo", "ok"),
        ("mcp_call", "vk-alice", "get-sum", "ok"),
        ("mcp_denied", "vk-bob", "get-sum", "denied"),
    ]
    assert calls[-1]["arguments_bytes"] > 0 and len(calls[-1]["arguments_sha256"]) == 64

    async def audited() -> list[Any]:
        return [r async for r in gateway.services.store.audit_records() if r.kind.startswith("mcp_")]

    records = gateway.call(audited())
    assert [r.kind for r in records][-3:] == ["mcp_call", "mcp_call", "mcp_denied"]
    assert "upstream-credential-stays-here" not in str([r.data for r in records])


async def test_unknown_key_gets_a_plain_401(gateway: GatewayThread) -> None:
    async with httpx2.AsyncClient() as http:
        resp = await http.post(
            gateway.base_url + "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Authorization": "Bearer sk-sluice-wrong"},
        )
    assert resp.status_code == 401 and "www-authenticate" not in resp.headers
