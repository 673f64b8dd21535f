"""The `mcp` section and the MCP part of keys, teams and profiles."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from sluice.settings.base import _Strict


class McpAccess(_Strict):
    """What of the MCP servers a key or team may see and use: tool groups, and patterns
    `server/name` (shell-style wildcards allowed, e.g. `server/*`) for tools, resources (by the
    upstream URI) and prompts."""

    tool_groups: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)


class McpServerConfig(_Strict):
    # No `__` in a name: exposed names are split on the first `__` (server__tool).
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.-]+(_[A-Za-z0-9.-]+)*$")
    transport: Literal["stdio", "http", "sse"]
    command: str | None = None  # stdio
    args: list[str] = Field(default_factory=list)
    env: dict[str, SecretStr] = Field(default_factory=dict)  # credentials stay in the gateway
    cwd: str | None = None
    url: str | None = None  # http, sse
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    # Per server, so one slow or dead server cannot hold up the others: how long starting may take,
    # how long a listing waits for a server that is still starting, and how long one call may take.
    start_timeout_s: float = Field(default=30.0, gt=0)
    list_timeout_s: float = Field(default=5.0, gt=0)
    call_timeout_s: float = Field(default=120.0, gt=0)
    health_interval_s: float = Field(default=15.0, gt=0)  # ping a started server this often

    @model_validator(mode="after")
    def _endpoint(self) -> McpServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError(f"MCP server {self.name!r}: a stdio server needs 'command'")
        if self.transport != "stdio" and not self.url:
            raise ValueError(f"MCP server {self.name!r}: an {self.transport} server needs 'url'")
        return self


class ToolGroupConfig(_Strict):
    name: str = Field(min_length=1)
    tools: list[str] = Field(default_factory=list)
    resources: list[str] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)


class ToolRateLimitConfig(_Strict):
    """At most `max_calls` calls per window for each key and each tool matching `tools`."""

    id: str = Field(min_length=1)
    tools: list[str] = Field(min_length=1)  # `server/tool` patterns
    max_calls: int = Field(gt=0)
    reset_duration: str

    @field_validator("reset_duration")
    @classmethod
    def _fixed(cls, value: str) -> str:
        from sluice.core.windows import Duration

        if Duration.parse(value).seconds is None:
            raise ValueError("a tool rate limit needs a fixed window (s, m, h, d or w)")
        return value


class McpConfig(_Strict):
    servers: list[McpServerConfig] = Field(default_factory=list)
    tool_groups: list[ToolGroupConfig] = Field(default_factory=list)
    rate_limits: list[ToolRateLimitConfig] = Field(default_factory=list)
    # Also serve the older HTTP+SSE transport (GET /sse, POST /messages) for clients that need it.
    sse_transport: bool = True

    @model_validator(mode="after")
    def _unique_servers(self) -> McpConfig:
        names = [s.name for s in self.servers]
        if len(names) != len(set(names)):
            raise ValueError("MCP server names must be unique")
        return self
