"""Configuration: providers and their keys (names only), routing rules and aliases, MCP servers and
tool groups, and the configuration events with before and after.

Each list is the admin API's own listing handler (GET /api/<kind>, `config.read`), so secrets come
out as the API shows them and then only names are printed; the events are GET /api/config/events
(`events.read`: admin and security auditor), recorded as a data read like the API's."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from sluice.http.console.web import Page

SECTIONS = (
    ("provider", "/api/providers", "Providers"),
    ("provider_key", "/api/provider-keys", "Provider keys"),
    ("routing_rule", "/api/routing-rules", "Routing rules"),
    ("alias", "/api/aliases", "Aliases"),
    ("mcp_server", "/api/mcp-servers", "MCP servers"),
    ("tool_group", "/api/tool-groups", "MCP tool groups"),
)


async def configuration(page: Page) -> Response:
    lists: list[tuple[str, str, list[Any]]] = []
    for kind, path, title in SECTIONS:
        found = await page.admin("GET", path, {})
        lists.append((kind, title, found.items))
    events = None
    if page.allowed("events.read"):
        params = page.request.query_params
        wanted = (params.get("kind") or "").strip()[:32] or None
        events = (await page.admin("GET", "/api/config/events", {}, query={"kind": wanted, "limit": 50})).items
    return page.render("config.html", lists=lists, events=events, kind=page.request.query_params.get("kind", ""))
