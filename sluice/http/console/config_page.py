"""Configuration: providers and their keys (names only), routing rules and aliases, MCP servers and
tool groups, and the configuration events with before and after.

Each list is one kind's objects read by kind (not the whole configuration once per list) and shown
as the admin API shows them (`Kind.public`: secrets as their reference or "(encrypted)"), under
the API's listing rule (`config.read` on no particular scope); then only names are printed.
Beside them, what the gateway's config file declares of each kind (source "config file"), which
a stored object of the same name replaces, as the gateway lays the store over the file
(sluice/admin/live.py merged_config): no secret of the file is read. The events are
GET /api/config/events (`events.read`: admin and security auditor), recorded as a data
read like the API's."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from sluice.admin.kinds import KINDS
from sluice.http.console.mcp_page import where
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


def from_file(config: Any) -> dict[str, list[ConfigObject]]:
    """The config file's providers, provider keys (names), routing rules, aliases, MCP servers and
    tool groups as the objects the page lists: only what is safe to show of each."""
    file = "config file"
    found: dict[str, list[ConfigObject]] = {kind: [] for kind, _ in SECTIONS}
    for name, provider in config.providers.items():
        body = {"type": provider.type or name, "base_url": provider.base_url}
        found["provider"].append(ConfigObject("provider", name, body, file))
        for key in provider.keys:
            found["provider_key"].append(ConfigObject("provider_key", f"{name}:{key.name}", {"provider": name}, file))
    for rule in config.routing.rules:
        body = {"when": rule.when, "target": rule.target or ", ".join(t.model for t in rule.targets)}
        found["routing_rule"].append(ConfigObject("routing_rule", rule.id, body, file))
    for alias in config.routing.aliases:
        found["alias"].append(ConfigObject("alias", alias.alias, alias.model_dump(mode="json"), file))
    for server in config.mcp.servers:
        body = {"transport": server.transport, "url": where(server)}
        found["mcp_server"].append(ConfigObject("mcp_server", server.name, body, file))
    for group in config.mcp.tool_groups:
        found["tool_group"].append(ConfigObject("tool_group", group.name, {"tools": list(group.tools)}, file))
    return found


async def configuration(page: Page) -> Response:
    lists: list[tuple[str, str, list[Any]]] = []
    file = from_file(page.services.config)
    for kind, title in SECTIONS:
        page.authorize(KINDS[kind].action_read)  # what GET /api/<kind> asks
        shown = [
            ConfigObject(o.kind, o.id, KINDS[kind].public(o.body), o.source)
            for o in await page.console.queries.objects(kind)
        ]
        stored = {o.id for o in shown}
        shown += [o for o in file[kind] if o.id not in stored]
        lists.append((kind, title, sorted(shown, key=lambda o: o.id)))
    events = None
    if page.allowed("events.read"):
        params = page.request.query_params
        wanted = (params.get("kind") or "").strip()[:32] or None
        events = (await page.admin("GET", "/api/config/events", {}, query={"kind": wanted, "limit": 50})).items
    return page.render("config.html", lists=lists, events=events, kind=page.request.query_params.get("kind", ""))
