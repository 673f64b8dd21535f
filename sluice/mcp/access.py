"""Which MCP tools a key may use (pure): default deny; `server/tool`, `server/*` and tool groups."""

from __future__ import annotations

from sluice.settings import McpConfig
from sluice.storage.records import VirtualKey

SEP = "__"  # exposed names are `server__tool`: the MCP SDK allows only [A-Za-z0-9._-] in tool names


def exposed_name(server: str, tool: str) -> str:
    return f"{server}{SEP}{tool}"


class ToolAccess:
    def __init__(self, config: McpConfig) -> None:
        self._groups = {g.name: tuple(g.tools) for g in config.tool_groups}

    def patterns(self, key: VirtualKey) -> set[str]:
        found = set(key.mcp_tools)
        for group in key.mcp_tool_groups:
            found.update(self._groups.get(group, ()))
        return found

    def allows(self, key: VirtualKey, server: str, tool: str) -> bool:
        patterns = self.patterns(key)
        return f"{server}/{tool}" in patterns or f"{server}/*" in patterns
