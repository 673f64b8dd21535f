"""MCP: the upstream servers with their health in this process, their tools and the tool groups
(`config.read`, as GET /api/mcp-servers and /api/tool-groups ask), who is granted what: keys'
own grants (the keys the caller may read, `keys.read`), teams' grants (`config.read`, as GET
/api/teams) and access profiles' (`profiles.read`), and the calls and denials per server and
tool from the audit log (`audit.read`, recorded as a data read).

Servers and groups are the live ones (the config file's with the store's laid over them, as the
MCP gateway serves them); a server's address is shown without credentials or query."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import Response

from sluice.admin.kinds import KINDS
from sluice.http.console.keys import scope_of
from sluice.http.console.web import Page

RECENT = 200
TOOLS_SHOWN = 100  # per server


@dataclass
class ServerUse:
    calls: int = 0
    failed: int = 0  # answered with an error, timed out or unavailable
    denied: int = 0
    durations_us: list[int] = field(default_factory=list)

    @property
    def median_ms(self) -> float | None:
        return statistics.median(self.durations_us) / 1000 if self.durations_us else None


def where(server: Any) -> str:
    """A server's address without what may carry a credential (userinfo, query, fragment), or
    the stdio command without its arguments and environment."""
    if server.url:
        parts = urlsplit(server.url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}"
    return str(server.command or "")


def _grant(body: dict[str, Any]) -> dict[str, list[str]] | None:
    mcp = body.get("mcp")
    if not isinstance(mcp, dict) or not any(mcp.get(k) for k in ("tool_groups", "tools", "resources", "prompts")):
        return None
    return {k: [str(v) for v in mcp.get(k) or []] for k in ("tool_groups", "tools", "resources", "prompts")}


async def mcp(page: Page) -> Response:
    q = page.console.queries
    page.authorize(KINDS["mcp_server"].action_read)  # what GET /api/mcp-servers asks
    gateway = page.services.mcp
    stored = {o.id for o in await q.objects("mcp_server")}
    health = {h.name: h for h in gateway.catalogue.health()}
    servers = []
    for cfg in sorted(gateway.config.servers, key=lambda s: s.name):
        upstream = gateway.catalogue.get(cfg.name)
        tools = list(upstream.catalog.tools) if upstream is not None else []
        servers.append(
            {
                "name": cfg.name,
                "transport": cfg.transport,
                "where": where(cfg),
                "source": "store" if cfg.name in stored else "config file",
                "health": (h := health.get(cfg.name)),
                "checked": datetime.fromtimestamp(h.checked_at, UTC) if h and h.checked_at else None,
                "tools": [(f"{cfg.name}__{t.name}", (t.description or "")[:160]) for t in tools[:TOOLS_SHOWN]],
                "more_tools": max(0, len(tools) - TOOLS_SHOWN),
            }
        )
    groups = sorted(gateway.config.tool_groups, key=lambda g: g.name)
    granted = [
        k
        for k in await q.mcp_grants(page.key_visibility("keys.read"))
        if page.allowed("keys.read", scope_of(k)) and (k.mcp_tools or k.mcp_tool_groups)
    ]
    members = await q.keys_per_team()
    teams = [(o.id, members.get(o.id, 0), g) for o in await q.objects("team") if (g := _grant(o.body)) is not None]
    profiles = None
    if page.allowed(KINDS["access_profile"].action_read):
        derived = await q.keys_per_profile()
        profiles = [
            (o.id, derived.get(o.id, 0), o.body.get("team_id"), g)
            for o in await q.objects("access_profile")
            if (g := _grant(o.body)) is not None
        ]
    calls: list[dict[str, Any]] | None = None
    per_tool: list[tuple[str, int, int]] = []
    per_server: dict[str, ServerUse] = defaultdict(ServerUse)
    if page.allowed("audit.read"):
        calls = [
            *await q.audit_records("mcp_call", None, None, RECENT),
            *await q.audit_records("mcp_denied", None, None, RECENT),
        ]
        calls.sort(key=lambda r: -int(r["seq"]))
        made: Counter[str] = Counter()
        denied: Counter[str] = Counter()
        for r in calls:
            data = r.get("data") or {}
            tool = str(data.get("tool") or data.get("name") or "?")
            use = per_server[str(data.get("server") or "?")]
            if r["kind"] == "mcp_denied":
                denied[tool] += 1
                use.denied += 1
                continue
            made[tool] += 1
            use.calls += 1
            use.failed += data.get("outcome") not in ("ok", None)
            if isinstance(data.get("duration_us"), int):
                use.durations_us.append(data["duration_us"])
        per_tool = sorted(((t, made[t], denied[t]) for t in {*made, *denied}), key=lambda x: -(x[1] + x[2]))
        await page.services.admin.data_read(
            page.principal.actor, "audit_query", {"filters": {"kind": "mcp"}, "records": len(calls), "via": "console"}
        )
    return page.render(
        "mcp.html",
        servers=servers,
        groups=groups,
        granted=granted,
        teams=teams,
        profiles=profiles,
        calls=calls,
        per_tool=per_tool,
        per_server=sorted(per_server.items()),
    )
