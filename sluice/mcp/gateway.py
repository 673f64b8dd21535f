"""The MCP gateway: one MCP endpoint that shows each developer only the tools their key allows,
aggregated from upstream tool servers whose credentials stay here, and records every call.

Built on the official `mcp` SDK: a low-level server whose handlers run per request (so the
listing and the permission check follow the caller's key and any change to it at once), served
over Streamable HTTP, with one SDK client per upstream server.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

import mcp_types as types
import orjson
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from sluice.audit.log import AuditLog
from sluice.core.errors import SluiceError
from sluice.core.tasks import spawn
from sluice.governance.keys import KeyCache, credential_from
from sluice.mcp.access import SEP, ToolAccess, exposed_name
from sluice.mcp.upstreams import Upstreams
from sluice.settings import McpConfig, McpServerConfig
from sluice.storage.records import VirtualKey

log = logging.getLogger("sluice.mcp")


class _Server(Server):
    # The session manager builds initialisation options without arguments; advertise that the
    # tool list can change (it does, whenever a key's allowlist does).
    def create_initialization_options(self, notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        options = notification_options or NotificationOptions(tools_changed=True)
        return super().create_initialization_options(options, *args, **kwargs)


def _client_for(cfg: McpServerConfig) -> Any:
    if cfg.transport == "stdio":
        env = {k: v.get_secret_value() for k, v in cfg.env.items()} or None
        return Client(
            StdioServerParameters(command=cfg.command or "", args=cfg.args, env=env), mode="legacy", cache=None
        )
    import httpx2

    headers = {k: v.get_secret_value() for k, v in cfg.headers.items()}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=cfg.call_timeout_s))
    return Client(streamable_http_client(cfg.url or "", http_client=http), mode="legacy", cache=None)


class McpGateway:
    def __init__(self, config: McpConfig, keys: KeyCache, audit: AuditLog) -> None:
        self._config = config
        self._keys = keys
        self._audit = audit
        self.access = ToolAccess(config)
        self._clients: dict[str, Any] = {}
        self._upstreams = Upstreams(_client_for)
        self._servers_lock = asyncio.Lock()
        self._tools: dict[str, tuple[str, str, types.Tool]] = {}  # exposed name -> (server, tool, Tool)
        self._timeouts = {s.name: s.call_timeout_s for s in config.servers}
        self._manager_closing = asyncio.Event()
        self._manager_task: asyncio.Task[None] | None = None
        self.calls: list[dict[str, Any]] = []  # recent call records, for tests and the request log
        server = _Server("sluice", version="0.1.0", on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        self.manager = StreamableHTTPSessionManager(app=server, stateless=False, json_response=False)
        self.enabled = bool(config.servers)
        self._started = False

    def reconfigure(self, config: McpConfig, access: ToolAccess) -> None:
        """New tool groups apply at once; servers are (dis)connected by `apply_servers`."""
        self.access = access
        self._config = config
        self._timeouts = {s.name: s.call_timeout_s for s in config.servers}
        if not self._started:
            self.enabled = bool(config.servers)

    async def start(self) -> None:
        """Connects to every upstream server (one that fails is left out, not fatal) and starts
        the session manager, each in a task of its own (anyio scopes must be left in the task
        that entered them), so `start`, `stop` and later changes may come from any task."""
        self._started = True
        for cfg in self._config.servers:
            await self._add(cfg)
        # Run the session manager even without servers, so servers added later are served.
        running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._manager_task = spawn(self._run_manager(running), name="mcp-session-manager")
        await running

    async def _run_manager(self, running: asyncio.Future[None]) -> None:
        try:
            async with self.manager.run():
                running.set_result(None)
                await self._manager_closing.wait()
        finally:
            if not running.done():
                running.set_exception(RuntimeError("the MCP session manager did not start"))

    async def apply_servers(self, config: McpConfig) -> None:
        """Connects servers that are new or changed and closes those removed, while running."""
        if not self._started:
            return
        async with self._servers_lock:
            wanted = {s.name: s for s in config.servers}
            for name in self._upstreams.names():
                if wanted.get(name) != self._upstreams.config_of(name):
                    await self._remove(name)
            for name, cfg in wanted.items():
                if self._upstreams.config_of(name) is None:
                    await self._add(cfg)
            self.enabled = bool(wanted)

    async def _add(self, cfg: McpServerConfig) -> None:
        connected = await self._upstreams.connect(cfg)
        if connected is None:
            return
        client, tools = connected
        self._clients[cfg.name] = client
        for tool in tools:
            name = exposed_name(cfg.name, tool.name)
            self._tools[name] = (cfg.name, tool.name, tool.model_copy(update={"name": name}))

    async def _remove(self, server: str) -> None:
        self._clients.pop(server, None)
        for name in [n for n, (s, _, _) in self._tools.items() if s == server]:
            del self._tools[name]
        await self._upstreams.disconnect(server)

    async def stop(self) -> None:
        self._manager_closing.set()
        if self._manager_task is not None:
            await asyncio.gather(self._manager_task, return_exceptions=True)
        await self._upstreams.close()

    async def _key(self, ctx: ServerRequestContext) -> VirtualKey:
        headers = {k.lower(): v for k, v in ctx.request.headers.items()} if ctx.request is not None else {}
        return await self._keys.authenticate(credential_from(headers))

    async def _list_tools(
        self, ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        key = await self._key(ctx)
        return types.ListToolsResult(
            tools=[tool for server, name, tool in self._tools.values() if self.access.allows(key, server, name)]
        )

    async def _call_tool(self, ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
        key = await self._key(ctx)
        arguments = params.arguments or {}
        encoded = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
        server, _, tool = params.name.partition(SEP)
        record: dict[str, Any] = {
            "virtual_key": key.id,
            "session": ctx.request.headers.get("mcp-session-id") if ctx.request else None,
            "server": server,
            "tool": tool,
            "arguments_bytes": len(encoded),
            "arguments_sha256": hashlib.sha256(encoded).hexdigest(),
        }
        started = time.perf_counter()
        if params.name not in self._tools or not self.access.allows(key, server, tool):
            await self._record("mcp_denied", key, {**record, "outcome": "denied"})
            # The same answer for a tool that exists and one that does not: no probing the catalogue.
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        try:
            result: types.CallToolResult = await self._clients[server].call_tool(
                tool, arguments, read_timeout_seconds=self._timeouts.get(server, 120)
            )
        except MCPError as exc:
            await self._record(
                "mcp_call",
                key,
                {
                    **record,
                    "outcome": "upstream_error",
                    "error": str(exc)[:300],
                    "duration_us": int((time.perf_counter() - started) * 1e6),
                },
            )
            raise
        outcome = "error_result" if result.is_error else "ok"
        await self._record(
            "mcp_call", key, {**record, "outcome": outcome, "duration_us": int((time.perf_counter() - started) * 1e6)}
        )
        return result

    async def _record(self, kind: str, key: VirtualKey, data: dict[str, Any]) -> None:
        self.calls.append({"kind": kind, **data})
        del self.calls[:-1000]
        try:
            await self._audit.append(kind, key.id, data)
        except Exception:
            log.exception("MCP call record could not be written to the audit log")

    async def authenticate(self, headers: dict[str, str]) -> VirtualKey | SluiceError:
        try:
            return await self._keys.authenticate(credential_from(headers))
        except SluiceError as err:
            return err
