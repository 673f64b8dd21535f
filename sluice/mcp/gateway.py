"""The MCP gateway: one MCP endpoint that shows each developer only the tools, resources and
prompts their key allows, aggregated from upstream servers whose credentials stay here, and
records every call.

Built on the official `mcp` SDK: a low-level server whose handlers run per request, so a
listing and a permission check follow the caller's key (and any change to it) at once. The HTTP
edge authenticates the key and puts it in the request scope (`sluice.key`) before the SDK sees
the request; handlers read it from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from sluice.audit.log import AuditLog
from sluice.core.clock import SYSTEM_CLOCK
from sluice.core.errors import SluiceError
from sluice.core.tasks import spawn
from sluice.governance.keys import KeyCache, check_usable, credential_from
from sluice.governance.refresh import Follower
from sluice.mcp.access import Grants, ToolAccess
from sluice.mcp.calls import CallHandlers
from sluice.mcp.catalog import Catalogue
from sluice.mcp.correlate import SessionCalls
from sluice.mcp.ratelimit import ToolRateLimits
from sluice.mcp.sessions import LiveSessions
from sluice.settings import McpAccess, McpConfig, TeamConfig
from sluice.storage.ports import Store
from sluice.storage.records import VirtualKey

log = logging.getLogger("sluice.mcp")


def _usable(key: VirtualKey, now: datetime) -> bool:
    try:
        check_usable(key, now)
    except SluiceError:
        return False
    return True


class _Server(Server[Any]):
    # The session manager builds initialisation options without arguments; advertise that the
    # lists can change (they do, whenever a key's grants or an upstream's catalogue do).
    def create_initialization_options(self, notification_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        options = notification_options or NotificationOptions(
            tools_changed=True, resources_changed=True, prompts_changed=True
        )
        return super().create_initialization_options(options, *args, **kwargs)


class McpGateway(CallHandlers):
    def __init__(self, config: McpConfig, keys: KeyCache, audit: AuditLog, store: Store | None = None) -> None:
        self.config = config
        self._keys = keys
        self._audit = audit
        self._store = store
        self.access = ToolAccess(config)
        self.catalogue = Catalogue(config.servers, self._upstream_changed)
        self.limits = ToolRateLimits(config.rate_limits)
        self.sessions = LiveSessions()
        self.session_calls = SessionCalls()
        self.calls: list[dict[str, Any]] = []  # recent call records, for tests and diagnostics
        self.observe: Callable[[str, dict[str, Any]], None] | None = None  # set by the composition root
        self.teams: dict[str, McpAccess] = {}
        self._known_keys: dict[str, VirtualKey] = {}
        self._sse: dict[str, set[anyio.CancelScope]] = {}
        self._follower = Follower("mcp", self._version, self.refresh) if store is not None else None
        self._manager_closing = asyncio.Event()
        self._manager_task: asyncio.Task[None] | None = None
        self.server = _Server(
            "sluice",
            version="0.1.0",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._list_resources,
            on_list_resource_templates=self._list_templates,
            on_read_resource=self._read_resource,
            on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt,
            on_subscriptions_listen=self._listen,
        )
        self.server.middleware.append(self._register)
        self.manager = StreamableHTTPSessionManager(app=self.server, stateless=False, json_response=False)

    @property
    def enabled(self) -> bool:
        return bool(self.catalogue.upstreams)

    async def start(self) -> None:
        """Starts the session manager; upstream servers start on first use. The manager runs in
        a task of its own (anyio scopes must be left in the task that entered them), so `start`
        and `stop` may come from different tasks."""
        running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._manager_closing.clear()
        self._manager_task = spawn(self._run_manager(running), name="mcp-session-manager")
        await running
        if self._follower is not None:
            await self._follower.start()

    async def _run_manager(self, running: asyncio.Future[None]) -> None:
        try:
            async with self.manager.run():
                running.set_result(None)
                await self._manager_closing.wait()
        finally:
            if not running.done():
                running.set_exception(RuntimeError("the MCP session manager did not start"))

    async def stop(self) -> None:
        if self._follower is not None:
            await self._follower.stop()
        for scopes in self._sse.values():
            for scope in scopes:
                scope.cancel()
        await self.catalogue.stop()
        self._manager_closing.set()
        if self._manager_task is not None:
            await asyncio.gather(self._manager_task, return_exceptions=True)

    async def reload(self, config: McpConfig) -> None:
        """A re-read config file: groups, rate limits and servers apply to the next request, and
        live sessions whose view changed are told."""
        self.config = config
        self.access = ToolAccess(config)
        self.limits = ToolRateLimits(config.rate_limits)
        await self.catalogue.reload(config.servers)
        await self.refresh()

    # -- who is calling ------------------------------------------------------------------------

    async def authenticate(self, headers: dict[str, str], *, cached_only: bool = False) -> VirtualKey | SluiceError:
        try:
            return await self._keys.authenticate(credential_from(headers), cached_only=cached_only)
        except SluiceError as err:
            return err

    def grants(self, key: VirtualKey) -> Grants:
        return self.access.grants(key, self.teams)

    def caller(self, ctx: ServerRequestContext[Any, Any]) -> tuple[VirtualKey, Grants, str | None]:
        scope = ctx.request.scope if ctx.request is not None else {}
        key = scope.get("sluice.key")
        if not isinstance(key, VirtualKey):
            raise MCPError(code=types.INVALID_REQUEST, message="Not authenticated")
        return key, self.grants(key), scope.get("sluice.agent_session")

    # -- live sessions ---------------------------------------------------------------------------

    async def _register(self, ctx: ServerRequestContext[Any, Any], call_next: Any) -> Any:
        result = await call_next(ctx)
        if ctx.method == "initialize" and ctx.request is not None:
            key = ctx.request.scope.get("sluice.key")
            if isinstance(key, VirtualKey):
                self._known_keys[key.id] = key
                sid = ctx.session._connection.session_id or ctx.request.query_params.get("session_id")
                end = (lambda: self._discard(sid)) if sid and ctx.session._connection.session_id else None
                self.sessions.add_session(ctx, key.id, sid, self.catalogue.view(self.grants(key)), end)
        return result

    async def _discard(self, session_id: str) -> None:
        # The SDK's manager has no public way to end one session; this is its own teardown path.
        transport = self.manager._server_instances.get(session_id)
        if transport is not None:
            await self.manager._discard_session(session_id, transport)

    async def _listen(self, ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
        key, grants, _ = self.caller(ctx)
        self._known_keys[key.id] = key
        return await self.sessions.listener(key.id, self.catalogue.view(grants))(ctx, params)

    def track_sse(self, key_id: str, scope: anyio.CancelScope, add: bool) -> None:
        scopes = self._sse.setdefault(key_id, set())
        if add:
            scopes.add(scope)
        else:
            scopes.discard(scope)
            if not scopes:
                del self._sse[key_id]

    async def end_key(self, key_id: str) -> None:
        await self.sessions.end_key(key_id)
        for scope in self._sse.pop(key_id, set()):
            scope.cancel()
        self._known_keys.pop(key_id, None)

    async def _version(self) -> int:
        assert self._store is not None
        return await self._store.keys_version() + await self._store.config_version()

    async def refresh(self) -> None:
        """Keys or teams changed in the store: reload them, end the sessions of keys that can no
        longer be used and tell the others what changed in their view."""
        if self._store is None:
            return
        await self._keys.reload()  # so a client re-listing on our notification sees the change
        keys = {k.id: k for k in await self._store.list_keys()}
        teams = {}
        for obj in await self._store.list_objects():
            if obj.kind == "team":
                access = TeamConfig.model_validate(obj.body).mcp
                if access is not None:
                    teams[obj.id] = access
        self.teams = teams
        now = SYSTEM_CLOCK.now()
        for key_id in self.sessions.key_ids() | set(self._sse):
            key = keys.get(key_id)
            if key is None or not _usable(key, now):
                await self.end_key(key_id)  # revoked, deactivated, expired or deleted
                continue
            self._known_keys[key_id] = key
        await self._update_views()

    async def _update_views(self) -> None:
        for key_id in self.sessions.key_ids():
            key = self._known_keys.get(key_id)
            if key is not None:
                await self.sessions.update(key_id, self.catalogue.view(self.grants(key)))

    async def _upstream_changed(self, server: str) -> None:
        await self._update_views()

    # -- audit -----------------------------------------------------------------------------------

    async def record(self, kind: str, key: VirtualKey, data: dict[str, Any]) -> None:
        self.calls.append({"kind": kind, **data})
        if self.observe is not None:  # the MCP metrics (sluice.observability.metrics.McpMetrics)
            self.observe(kind, data)
        del self.calls[:-1000]
        try:
            await self._audit.append(kind, key.id, data)
        except Exception:
            log.exception("MCP call record could not be written to the audit log")
