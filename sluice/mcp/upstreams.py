"""Connections to upstream MCP servers that can come and go while the gateway runs.

The SDK's clients are async context managers built on anyio, whose cancel scopes must be left in
the task that entered them. So each connection lives in a task of its own, which enters the
client, hands it over, and leaves it when asked: a server added through the admin API is
connected from whichever task notices the change, and one removed is closed the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sluice.core.tasks import cancel, spawn
from sluice.settings import McpServerConfig

log = logging.getLogger("sluice.mcp")
ClientFactory = Callable[[McpServerConfig], AbstractAsyncContextManager[Any]]


@dataclass
class _Held:
    config: McpServerConfig
    client: Any
    closing: asyncio.Event
    task: asyncio.Task[None]


class Upstreams:
    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._held: dict[str, _Held] = {}

    def config_of(self, name: str) -> McpServerConfig | None:
        held = self._held.get(name)
        return held.config if held else None

    def names(self) -> list[str]:
        return list(self._held)

    async def connect(self, cfg: McpServerConfig) -> tuple[Any, Sequence[Any]] | None:
        """(client, its tools), or None when the server cannot be reached (logged, not fatal)."""
        ready: asyncio.Future[tuple[Any, Sequence[Any]]] = asyncio.get_running_loop().create_future()
        closing = asyncio.Event()
        task = spawn(self._hold(cfg, ready, closing), name=f"mcp-upstream-{cfg.name}")
        try:
            client, tools = await ready
        except Exception as exc:
            log.error("MCP server %s unavailable: %s", cfg.name, exc)
            await cancel(task)
            return None
        self._held[cfg.name] = _Held(cfg, client, closing, task)
        return client, tools

    async def _hold(
        self, cfg: McpServerConfig, ready: asyncio.Future[tuple[Any, Sequence[Any]]], closing: asyncio.Event
    ) -> None:
        try:
            async with self._factory(cfg) as client:
                listed = await client.list_tools()
                ready.set_result((client, listed.tools))
                await closing.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("MCP server %s: connection ended: %s", cfg.name, exc)
        finally:
            if not ready.done():  # cancelled before it connected
                ready.set_exception(ConnectionError("connection cancelled"))

    async def disconnect(self, name: str) -> None:
        held = self._held.pop(name, None)
        if held is None:
            return
        held.closing.set()
        try:
            await asyncio.wait_for(asyncio.shield(held.task), timeout=10)
        except (TimeoutError, Exception):
            log.warning("MCP server %s did not close in time; cancelled", name)
            await cancel(held.task)

    async def close(self) -> None:
        for name in list(self._held):
            await self.disconnect(name)
