"""Shared pieces of the MCP gateway tests: real servers from npm (pinned in
tests/e2e/package.json), and the official `mcp` client SDK pointed at the gateway."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support import GatewayThread

NODE_MODULES = Path(__file__).parents[1] / "e2e" / "node_modules" / "@modelcontextprotocol"
EVERYTHING = NODE_MODULES / "server-everything" / "dist" / "index.js"
FILESYSTEM = NODE_MODULES / "server-filesystem" / "dist" / "index.js"


def require_servers() -> None:
    if not (EVERYTHING.exists() and FILESYSTEM.exists()):
        pytest.fail("MCP test servers are not installed: run `make e2e-deps` (make test does it)")


def everything(name: str = "everything", **extra: Any) -> dict[str, Any]:
    return {"name": name, "transport": "stdio", "command": "node", "args": [str(EVERYTHING), "stdio"], **extra}


def stalled(name: str, **extra: Any) -> dict[str, Any]:
    """A stdio server that starts and then never answers (a hung process)."""
    return {
        "name": name,
        "transport": "stdio",
        "command": sys.executable,
        "args": ["-c", "import time; time.sleep(600)"],
        **extra,
    }


def connect(
    gateway: GatewayThread,
    key: str,
    *,
    headers: dict[str, str] | None = None,
    mode: str = "legacy",
    on_message: Callable[[Any], Any] | None = None,
) -> tuple[httpx2.AsyncClient, Client]:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=httpx2.Timeout(30, read=60)
    )
    transport = streamable_http_client(gateway.base_url + "/mcp", http_client=http)
    return http, Client(transport, mode=mode, cache=None, message_handler=on_message)  # type: ignore[arg-type]


async def tools_of(gateway: GatewayThread, key: str) -> list[str]:
    http, client = connect(gateway, key)
    async with http, client:
        return sorted(t.name for t in (await client.list_tools()).tools)


def audited(gateway: GatewayThread, prefix: str = "mcp_") -> list[Any]:
    async def fetch() -> list[Any]:
        await gateway.services.audit.drain()
        return [r async for r in gateway.services.store.audit_records() if r.kind.startswith(prefix)]

    return list(gateway.call(fetch()))
