"""An MCP server added through the admin API is connected while the gateway runs, and one
removed is closed: with the real server-everything and the official client SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.mcp_support import EVERYTHING, require_servers, tools_of
from tests.support import GatewayThread

TOKEN = "mcp-live-bootstrap-0123456789abcdef"
KEY = "sk-sluice-mcp-live-000000000000"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayThread]:
    require_servers()
    config: dict[str, Any] = {"virtual_keys": [{"id": "vk-live", "value": KEY, "mcp": {"tools": ["everything/echo"]}}]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLUICE_ADMIN_TOKEN", TOKEN)
        with GatewayThread(config, tmp_path) as gw:
            yield gw


def admin(gw: GatewayThread, method: str, path: str, body: Any = None) -> requests.Response:
    headers = {"authorization": f"Bearer {TOKEN}"}
    return requests.request(method, gw.base_url + path, json=body, headers=headers, timeout=30)


def mcp_status(gw: GatewayThread) -> int:
    return requests.post(gw.base_url + "/mcp", timeout=10).status_code


async def wait_for_tools(gw: GatewayThread, want: list[str]) -> None:
    for _ in range(100):
        if await tools_of(gw, KEY) == want:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"tools never became {want}")


async def test_servers_come_and_go_while_running(gateway: GatewayThread) -> None:
    assert mcp_status(gateway) == 404  # no server yet
    server = {
        "name": "everything",
        "transport": "stdio",
        "command": "node",
        "args": [str(EVERYTHING), "stdio"],
    }
    assert admin(gateway, "PUT", "/api/mcp-servers/everything", server).status_code == 200
    await wait_for_tools(gateway, ["everything__echo"])
    # A second server, then the first removed: its tools go, the other's connection stays.
    second = {**server, "name": "other"}
    assert admin(gateway, "PUT", "/api/mcp-servers/other", second).status_code == 200
    assert admin(gateway, "DELETE", "/api/mcp-servers/everything").status_code == 204
    await wait_for_tools(gateway, [])  # the key allows only everything/echo
    assert gateway.services.mcp.enabled
    assert admin(gateway, "DELETE", "/api/mcp-servers/other").status_code == 204
    assert mcp_status(gateway) == 404  # none left
