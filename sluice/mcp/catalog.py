"""The upstream servers as one catalogue, seen through a key's grants under namespaced names."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase

import mcp_types as types

from sluice.mcp.access import Grants, exposed_name, exposed_uri
from sluice.mcp.sessions import View
from sluice.mcp.upstream import Health, Upstream
from sluice.settings import McpServerConfig

log = logging.getLogger("sluice.mcp")


class Catalogue:
    def __init__(self, servers: list[McpServerConfig], on_change: Callable[[str], Awaitable[None]]) -> None:
        self._on_change = on_change
        self.upstreams: dict[str, Upstream] = {s.name: Upstream(s, on_change) for s in servers}

    def get(self, name: str) -> Upstream | None:
        return self.upstreams.get(name)

    def health(self) -> list[Health]:
        """Each configured server's health in this process, by name (a read: starts nothing)."""
        return [self.upstreams[name].health() for name in sorted(self.upstreams)]

    async def reload(self, servers: list[McpServerConfig]) -> None:
        """A server whose settings changed is stopped and replaced (started again on next use)."""
        wanted = {s.name: s for s in servers}
        for name, upstream in list(self.upstreams.items()):
            if wanted.get(name) != upstream.cfg:
                del self.upstreams[name]
                await upstream.stop()
        for name, cfg in wanted.items():
            if name not in self.upstreams:
                self.upstreams[name] = Upstream(cfg, self._on_change)

    async def stop(self) -> None:
        await asyncio.gather(*(u.stop() for u in self.upstreams.values()), return_exceptions=True)

    async def prepare(self, grants: Grants) -> None:
        """Starts (lazily) the servers this key can reach and waits for them, each at most its
        own `list_timeout_s`, all at once: a slow or dead server delays a listing by its timeout
        at worst and is left out of it, and the others are listed all the same. A server that
        comes up later triggers list_changed for the sessions that can see it."""
        waits = [u.wait_ready(u.cfg.list_timeout_s) for u in self._reachable(grants) if u.client is None]
        if waits:
            await asyncio.gather(*waits)

    def _reachable(self, grants: Grants) -> list[Upstream]:
        return [self.upstreams[n] for n in grants.servers(self.upstreams)]

    def tools(self, grants: Grants) -> list[types.Tool]:
        out = []
        for u in self._reachable(grants):
            for tool in u.catalog.tools:
                if grants.tool(u.name, tool.name):
                    out.append(tool.model_copy(update={"name": exposed_name(u.name, tool.name)}))
        return out

    def resources(self, grants: Grants) -> list[types.Resource]:
        out = []
        for u in self._reachable(grants):
            for res in u.catalog.resources:
                if grants.resource(u.name, res.uri):
                    out.append(res.model_copy(update={"uri": exposed_uri(u.name, res.uri)}))
        return out

    def templates(self, grants: Grants) -> list[types.ResourceTemplate]:
        out = []
        for u in self._reachable(grants):
            for tpl in u.catalog.templates:
                # A template is listed when the key may read some resources of the server; each
                # read is checked against the concrete URI.
                if any(fnmatchcase(u.name, p.partition("/")[0]) for p in grants.resources):
                    out.append(tpl.model_copy(update={"uri_template": exposed_uri(u.name, tpl.uri_template)}))
        return out

    def prompts(self, grants: Grants) -> list[types.Prompt]:
        out = []
        for u in self._reachable(grants):
            for prompt in u.catalog.prompts:
                if grants.prompt(u.name, prompt.name):
                    out.append(prompt.model_copy(update={"name": exposed_name(u.name, prompt.name)}))
        return out

    def view(self, grants: Grants) -> View:
        """What a key sees now, from the cached catalogues (never waits for a server)."""
        return (
            frozenset(t.name for t in self.tools(grants)),
            frozenset(r.uri for r in self.resources(grants)),
            frozenset(p.name for p in self.prompts(grants)),
        )

    def has_tool(self, server: str, tool: str) -> bool:
        u = self.upstreams.get(server)
        return u is not None and any(t.name == tool for t in u.catalog.tools)

    def status(self) -> dict[str, dict[str, object]]:
        """The short form of `health` (ready, restarts, error, tools) by server name."""
        return {
            h.name: {"ready": h.state == "connected", "restarts": h.restarts, "error": h.last_error, "tools": h.tools}
            for h in self.health()
        }
