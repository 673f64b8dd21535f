"""Configuration: providers and their keys (names only), routing rules and aliases, MCP servers and
tool groups, and the configuration events with before and after.

Each list is one kind's objects read by kind (not the whole configuration once per list) and shown
as the admin API shows them (`Kind.public`: secrets as their reference or "(encrypted)"), under
the API's listing rule (`config.read` on no particular scope); then only names are printed. The
events are GET /api/config/events (`events.read`: admin and security auditor), recorded as a data
read like the API's."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from sluice.admin.kinds import KINDS
from sluice.http.console.web import Page
from sluice.storage.records import ConfigObject

SECTIONS = (
    ("provider", "Providers"),
    ("provider_key", "Provider keys"),
    ("routing_rule", "Routing rules"),
    ("alias", "Aliases"),
    ("mcp_server", "MCP servers"),
    ("tool_group", "MCP tool groups"),
)


async def configuration(page: Page) -> Response:
    lists: list[tuple[str, str, list[Any]]] = []
    for kind, title in SECTIONS:
        page.authorize(KINDS[kind].action_read)  # what GET /api/<kind> asks
        shown = [
            ConfigObject(o.kind, o.id, KINDS[kind].public(o.body), o.source)
            for o in await page.console.queries.objects(kind)
        ]
        lists.append((kind, title, shown))
    events = None
    if page.allowed("events.read"):
        params = page.request.query_params
        wanted = (params.get("kind") or "").strip()[:32] or None
        events = (await page.admin("GET", "/api/config/events", {}, query={"kind": wanted, "limit": 50})).items
    return page.render("config.html", lists=lists, events=events, kind=page.request.query_params.get("kind", ""))
