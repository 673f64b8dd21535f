"""The MCP clients connected right now, per key: told when their view changes, ended when their
key stops being usable.

Two protocol eras reach us. Handshake-era clients (`initialize`, an `Mcp-Session-Id`, also the
old HTTP+SSE transport) get `notifications/*/list_changed` on their session's standing stream.
Clients of the 2026-07-28 era have no session: they open `subscriptions/listen` streams, served
here by one SDK `ListenHandler` per key over that key's own bus, so one key's change never
reaches another key's listener.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.server.context import ServerRequestContext
from mcp.server.session import ServerSession
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    PromptsListChanged,
    ResourcesListChanged,
    ToolsListChanged,
)

log = logging.getLogger("sluice.mcp")

View = tuple[frozenset[str], frozenset[str], frozenset[str]]  # exposed tools, resource URIs, prompts


@dataclass(eq=False)
class Live:
    key_id: str
    session_id: str | None
    view: View
    session: ServerSession | None = None  # handshake era: the session's standing stream
    listener: ListenHandler | None = None  # 2026-07-28: the key's listen streams
    ended: anyio.Event = field(default_factory=anyio.Event)
    end: Callable[[], Awaitable[None]] | None = None


class LiveSessions:
    def __init__(self) -> None:
        self._live: dict[int, Live] = {}
        self._listeners: dict[str, tuple[InMemorySubscriptionBus, ListenHandler, Live]] = {}

    def __len__(self) -> int:
        return len(self._live) + len(self._listeners)

    def add_session(
        self,
        ctx: ServerRequestContext[Any, Any],
        key_id: str,
        session_id: str | None,
        view: View,
        end: Callable[[], Awaitable[None]] | None,
    ) -> None:
        """Keeps one strong reference per connection, dropped when the connection closes.

        `ctx.session` is a new object per request, yet any of them can notify the connection's
        standing stream later; the SDK offers no public handle on the connection, hence the
        private `_connection` (used here only)."""
        conn = ctx.session._connection
        ident = id(conn)
        if ident in self._live:
            return
        self._live[ident] = Live(key_id, session_id, view, session=ctx.session, end=end)
        conn.exit_stack.callback(self._live.pop, ident, None)

    def listener(self, key_id: str, view: View) -> ListenHandler:
        found = self._listeners.get(key_id)
        if found is None:
            bus = InMemorySubscriptionBus()
            found = (bus, ListenHandler(bus), Live(key_id, None, view))
            self._listeners[key_id] = found
        return found[1]

    def key_ids(self) -> set[str]:
        return {live.key_id for live in self._live.values()} | set(self._listeners)

    def session_of(self, key_id: str) -> list[str]:
        return [lv.session_id for lv in self._live.values() if lv.key_id == key_id and lv.session_id]

    async def update(self, key_id: str, view: View) -> int:
        """Tells each live client of `key_id` what part of its view changed. Returns how many."""
        told = 0
        for live in [lv for lv in self._live.values() if lv.key_id == key_id]:
            if live.view != view and live.session is not None:
                old, live.view = live.view, view
                await _notify_session(live.session, old, view)
                told += 1
        found = self._listeners.get(key_id)
        if found is not None and found[2].view != view:
            bus, _, live = found
            old, live.view = live.view, view
            tools, resources, prompts = _diff(old, view)
            if tools:
                await bus.publish(ToolsListChanged())
            if resources:
                await bus.publish(ResourcesListChanged())
            if prompts:
                await bus.publish(PromptsListChanged())
            told += 1
        return told

    async def end_key(self, key_id: str) -> int:
        """Ends every MCP session and listen stream of a key (revoked, expired, deleted)."""
        ended = 0
        for ident, live in [(i, lv) for i, lv in self._live.items() if lv.key_id == key_id]:
            self._live.pop(ident, None)
            if live.end is not None:
                with contextlib.suppress(Exception):
                    await live.end()
            ended += 1
        found = self._listeners.pop(key_id, None)
        if found is not None:
            found[1].close()
            ended += 1
        if ended:
            log.warning("MCP: ended %d session(s) of key %s", ended, key_id)
        return ended


def _diff(old: View, new: View) -> tuple[bool, bool, bool]:
    return old[0] != new[0], old[1] != new[1], old[2] != new[2]


async def _notify_session(session: ServerSession, old: View, new: View) -> None:
    # Best effort: the SDK drops a notification when the client has no standing stream open.
    tools, resources, prompts = _diff(old, new)
    try:
        if tools:
            await session.send_tool_list_changed()
        if resources:
            await session.send_resource_list_changed()
        if prompts:
            await session.send_prompt_list_changed()
    except Exception:
        log.debug("list_changed could not be sent", exc_info=True)
