"""One upstream MCP server: started on first use, watched, restarted after a failure, stopped
cleanly; its catalogue (tools, resources, templates, prompts) cached for listings.

Each connection lives in one task of its own because the SDK client is an anyio context manager
that must be entered and left in the same task. A start that takes too long cancels that task,
which unwinds the client (and reaps a stdio child) where it was entered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import mcp_types as types
from mcp import Client, MCPError, StdioServerParameters

from sluice.core.tasks import cancel, spawn
from sluice.settings import McpServerConfig

log = logging.getLogger("sluice.mcp")

_LIST_CHANGED = (
    types.ToolListChangedNotification,
    types.ResourceListChangedNotification,
    types.PromptListChangedNotification,
)


@dataclass(frozen=True, slots=True)
class Catalog:
    tools: list[types.Tool] = field(default_factory=list)
    resources: list[types.Resource] = field(default_factory=list)
    templates: list[types.ResourceTemplate] = field(default_factory=list)
    prompts: list[types.Prompt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Health:
    """What this process knows of one upstream server (each replica has its own connections)."""

    name: str
    transport: str
    state: str  # connected | starting | down (backing off) | idle (starts on first use) | stopped
    tools: int  # in its cached catalogue
    latency_ms: float | None  # the last health ping's round trip (or the connection's start)
    checked_at: float | None  # wall-clock time of that last successful exchange
    last_error: str | None  # scrubbed of the server's credentials
    failures: int  # in a row, since it last served
    restarts: int
    retry_in_s: float | None  # when down: until the next attempt


def unavailable(server: str, why: str) -> MCPError:
    return MCPError(code=types.INTERNAL_ERROR, message=f"MCP server {server!r} is unavailable: {why}")


async def _transport(cfg: McpServerConfig, stack: contextlib.AsyncExitStack) -> Any:
    if cfg.transport == "stdio":
        # The SDK starts the child with a safe subset of our environment (PATH, HOME, ...) plus
        # what is configured here: the gateway's own secrets are not inherited.
        env = {k: v.get_secret_value() for k, v in cfg.env.items()}
        return StdioServerParameters(command=cfg.command or "", args=cfg.args, env=env or None, cwd=cfg.cwd)
    headers = {k: v.get_secret_value() for k, v in cfg.headers.items()}
    if cfg.transport == "sse":
        from mcp.client.sse import sse_client

        return sse_client(cfg.url or "", headers=headers, timeout=cfg.start_timeout_s, sse_read_timeout=3600)
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = await stack.enter_async_context(
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(cfg.start_timeout_s, read=cfg.call_timeout_s))
    )
    return streamable_http_client(cfg.url or "", http_client=http)


async def _catalog(client: Client) -> Catalog:
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    caps = client.server_capabilities
    resources: list[types.Resource] = []
    templates: list[types.ResourceTemplate] = []
    prompts: list[types.Prompt] = []
    if caps.resources is not None:
        resources = list((await client.list_resources()).resources)
        with contextlib.suppress(MCPError):
            templates = list((await client.list_resource_templates()).resource_templates)
    if caps.prompts is not None:
        prompts = list((await client.list_prompts()).prompts)
    return Catalog(tools, resources, templates, prompts)


class Upstream:
    def __init__(self, cfg: McpServerConfig, on_change: Callable[[str], Awaitable[None]]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.catalog = Catalog()
        self.client: Client | None = None
        self.restarts = 0
        self.last_error: str | None = None
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._restart: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._dead = False
        self._stale = False
        self._stopping = False
        self._failures = 0
        self._retry_at = 0.0
        self._was_ready = False
        self._latency_ms: float | None = None
        self._checked_at: float | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def health(self) -> Health:
        """The server's state as this process sees it, without contacting it."""
        retry = max(0.0, self._retry_at - time.monotonic())
        if self._stopping:
            state = "stopped"
        elif self.client is not None:
            state = "connected"
        elif self.running:
            state = "starting"
        elif self._failures:
            state = "down"
        else:
            state = "idle"
        return Health(
            self.name,
            self.cfg.transport,
            state,
            len(self.catalog.tools),
            self._latency_ms,
            self._checked_at,
            self.last_error,
            self._failures,
            self.restarts,
            retry if state == "down" else None,
        )

    def _seen(self, started: float) -> None:
        self._latency_ms = (time.perf_counter() - started) * 1000
        self._checked_at = time.time()

    def ensure_started(self) -> None:
        """Starts connecting unless connected, connecting, stopping or backing off after a failure."""
        if self._stopping or self.running or time.monotonic() < self._retry_at:
            return
        self._ready, self._wake, self._dead, self._stale = asyncio.Event(), asyncio.Event(), False, False
        self._task = spawn(self._run(), name=f"mcp-upstream-{self.name}")

    async def wait_ready(self, wait_s: float) -> bool:
        self.ensure_started()
        if self.client is not None:
            return True
        if not self.running:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._ready.wait()), wait_s)
        return self.client is not None

    async def session(self) -> Client:
        """The live client, starting it if need be; raises an MCPError if it cannot be had."""
        if not await self.wait_ready(self.cfg.start_timeout_s):
            raise unavailable(self.name, self.last_error or "not started")
        assert self.client is not None
        return self.client

    def mark_dead(self) -> None:
        """A call saw the connection closed: drop this client and start again."""
        self._dead = True
        self._wake.set()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await cancel(self._restart)
        task = self._task
        if task is not None and not task.done():
            if self.client is None:
                task.cancel()  # still starting: nothing to close gracefully
            try:
                await asyncio.wait_for(asyncio.shield(task), 10)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            except BaseException:
                log.debug("MCP server %s ended with an error while stopping", self.name)

    async def _on_message(self, message: Any) -> None:
        # The server's lists changed: refetch them (in the connection's own task) and tell our
        # clients whose view includes this server.
        if isinstance(message, _LIST_CHANGED):
            self._stale = True
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        timed_out = False

        def start_timeout() -> None:
            nonlocal timed_out
            timed_out = True
            task.cancel()

        timer = loop.call_later(self.cfg.start_timeout_s, start_timeout)
        was_ready = False
        began = time.perf_counter()
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = await _transport(self.cfg, stack)
                client = await stack.enter_async_context(
                    Client(transport, mode="legacy", cache=None, message_handler=self._on_message)
                )
                catalog = await _catalog(client)
                timer.cancel()
                self._seen(began)
                self.client, self.catalog, was_ready = client, catalog, True
                self._failures, self.last_error = 0, None
                self._ready.set()
                log.info("MCP server %s ready: %d tool(s)", self.name, len(catalog.tools))
                await self._on_change(self.name)
                await self._watch(client)
        except asyncio.CancelledError:
            if not timed_out:
                raise
            self.last_error = f"did not start within {self.cfg.start_timeout_s:g} s"
        except BaseException as exc:  # an ExceptionGroup from the SDK's task group, or a spawn failure
            self.last_error = _scrub(_describe(exc), self.cfg)
        finally:
            timer.cancel()
            self.client = None
            self._ready.set()  # wake waiters: they see no client
        if self._stopping:
            return
        self._failures += 1
        delay = min(30.0, 0.5 * 2 ** (self._failures - 1))
        self._retry_at = time.monotonic() + delay
        log.error("MCP server %s failed (%s); retrying in %.1f s", self.name, self.last_error or "closed", delay)
        if was_ready or self._was_ready:
            # It served before, so clients rely on it: restart without waiting for a request.
            self._was_ready = True
            self.restarts += 1
            self._restart = spawn(self._restart_after(delay), name=f"mcp-restart-{self.name}")
            await self._on_change(self.name)

    async def _restart_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self.ensure_started()

    async def _watch(self, client: Client) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.cfg.health_interval_s)
            except TimeoutError:
                began = time.perf_counter()
                async with asyncio.timeout(min(10.0, self.cfg.health_interval_s * 2)):
                    # Upstreams speak the handshake era, where ping exists (the Client wrapper
                    # warns only because the newest era dropped it). A dead server fails here.
                    await client.session.send_ping()
                self._seen(began)
                continue
            self._wake.clear()
            if self._stopping or self._dead:
                self.last_error = None if self._stopping else "connection closed"
                return
            if self._stale:
                self._stale = False
                self.catalog = await _catalog(client)
                await self._on_change(self.name)


def _describe(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


def _scrub(text: str, cfg: McpServerConfig) -> str:
    """An error as logged and shown (server status): without the credentials the server's URL,
    headers or environment carry (an HTTP error names the URL it failed on)."""
    secrets: list[str] = [v.get_secret_value() for v in (*cfg.headers.values(), *cfg.env.values())]
    if cfg.url:
        parts = urlsplit(cfg.url)
        secrets += [p for p in (parts.password, parts.username, parts.query, parts.fragment) if p]
        secrets += [value for _, value in parse_qsl(parts.query)]
    # Values too short to be credentials (`x=1`) would only garble the message.
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
        for word in secret.split():  # "Bearer <token>": the token alone too
            if len(word) >= 8:
                text = text.replace(word, "***")
    return text
