"""MCP: servers and tool groups (shown as the admin API shows them, `config.read`), who is granted what
(the keys the caller may read, `keys.read`), and the recent calls and denials from the audit log
(`audit.read`, recorded as a data read)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from starlette.responses import Response

from sluice.admin.kinds import KINDS
from sluice.http.console.keys import scope_of
from sluice.http.console.web import Page
from sluice.storage.records import ConfigObject

RECENT = 200


async def mcp(page: Page) -> Response:
    q = page.console.queries
    page.authorize(KINDS["mcp_server"].action_read)  # what GET /api/mcp-servers asks
    servers = [
        ConfigObject(o.kind, o.id, KINDS[o.kind].public(o.body), o.source) for o in await q.objects("mcp_server")
    ]
    groups = await q.objects("tool_group")
    granted = [
        k
        for k in await q.mcp_grants(page.key_visibility("keys.read"))
        if page.allowed("keys.read", scope_of(k)) and (k.mcp_tools or k.mcp_tool_groups)
    ]
    calls: list[dict[str, Any]] | None = None
    per_tool: list[tuple[str, int, int]] = []
    if page.allowed("audit.read"):
        calls = [
            *await q.audit_records("mcp_call", None, None, RECENT),
            *await q.audit_records("mcp_denied", None, None, RECENT),
        ]
        calls.sort(key=lambda r: -int(r["seq"]))
        made: Counter[str] = Counter()
        denied: Counter[str] = Counter()
        for r in calls:
            tool = str((r.get("data") or {}).get("tool") or (r.get("data") or {}).get("name") or "?")
            (denied if r["kind"] == "mcp_denied" else made)[tool] += 1
        per_tool = sorted(((t, made[t], denied[t]) for t in {*made, *denied}), key=lambda x: -(x[1] + x[2]))
        await page.services.admin.data_read(
            page.principal.actor, "audit_query", {"filters": {"kind": "mcp"}, "records": len(calls), "via": "console"}
        )
    return page.render("mcp.html", servers=servers, groups=groups, granted=granted, calls=calls, per_tool=per_tool)
