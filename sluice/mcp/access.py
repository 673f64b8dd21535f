"""What of the MCP servers a key may see and use (pure), and the names things get on the wire.

Default deny: a key sees what its own `mcp` block, its team's and their tool groups grant, and
nothing else. Patterns are `server/name` with shell-style wildcards (`everything/*`,
`fs/file:///srv/docs/*`); resources are matched by their upstream URI, normalised (mcp/uris.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from sluice.mcp.uris import normalise
from sluice.settings import McpAccess, McpConfig
from sluice.storage.records import VirtualKey

SEP = "__"  # exposed names are `server__tool`: the MCP SDK allows only [A-Za-z0-9._-] in tool names
URI_PREFIX = "sluice://"  # exposed resource URIs are `sluice://server/<upstream uri>`


def exposed_name(server: str, name: str) -> str:
    return f"{server}{SEP}{name}"


def split_name(exposed: str) -> tuple[str, str]:
    """`server__tool` -> (server, tool); server names never contain `__`, tools may."""
    server, sep, name = exposed.partition(SEP)
    return (server, name) if sep and server and name else ("", "")


def exposed_uri(server: str, uri: str) -> str:
    # A plain prefix, not an encoding, so resource templates stay templates: the client expands
    # `sluice://srv/demo://r/{id}` into a URI that still maps back by stripping the prefix.
    return f"{URI_PREFIX}{server}/{uri}"


def split_uri(exposed: str) -> tuple[str, str]:
    if not exposed.startswith(URI_PREFIX):
        return "", ""
    server, sep, uri = exposed[len(URI_PREFIX) :].partition("/")
    return (server, uri) if sep and server and uri else ("", "")


def _normal_pattern(pattern: str) -> str:
    server, sep, uri = pattern.partition("/")
    normal = normalise(uri) if sep else None
    return f"{server}/{normal}" if normal is not None else pattern


def _match(patterns: Iterable[str], server: str, name: str) -> bool:
    subject = f"{server}/{name}"
    return any(fnmatchcase(subject, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class Grants:
    tools: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    prompts: frozenset[str] = frozenset()

    def tool(self, server: str, name: str) -> bool:
        return _match(self.tools, server, name)

    def resource(self, server: str, uri: str) -> bool:
        """Matched on the normalised URI (mcp/uris.py), against patterns normalised alike, so
        `..`, percent-encodings and case never lead outside a granted folder."""
        normal = normalise(uri)
        if normal is None:
            return False
        return _match((_normal_pattern(p) for p in self.resources), server, normal)

    def prompt(self, server: str, name: str) -> bool:
        return _match(self.prompts, server, name)

    def servers(self, known: Iterable[str]) -> list[str]:
        """The configured servers any pattern can reach: the only ones worth starting for this key."""
        heads = {p.partition("/")[0] for p in (*self.tools, *self.resources, *self.prompts)}
        return [s for s in known if any(fnmatchcase(s, h) for h in heads)]

    @property
    def empty(self) -> bool:
        return not (self.tools or self.resources or self.prompts)


class ToolAccess:
    def __init__(self, config: McpConfig) -> None:
        self._groups = {g.name: g for g in config.tool_groups}

    def grants(self, key: VirtualKey, teams: Mapping[str, McpAccess] | None = None) -> Grants:
        tools, resources, prompts = set(key.mcp_tools), set(key.mcp_resources), set(key.mcp_prompts)
        groups = list(key.mcp_tool_groups)
        team = (teams or {}).get(key.team_id or "")
        if team is not None:
            tools.update(team.tools)
            resources.update(team.resources)
            prompts.update(team.prompts)
            groups.extend(team.tool_groups)
        for name in groups:
            group = self._groups.get(name)
            if group is not None:
                tools.update(group.tools)
                resources.update(group.resources)
                prompts.update(group.prompts)
        return Grants(frozenset(tools), frozenset(resources), frozenset(prompts))
