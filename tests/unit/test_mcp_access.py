"""The MCP gateway's pure parts: grants, wire names, per-tool rate limits, session correlation."""

from __future__ import annotations

import pytest

from sluice.mcp.access import ToolAccess, exposed_uri, split_name, split_uri
from sluice.mcp.correlate import SessionCalls
from sluice.mcp.ratelimit import ToolRateLimits
from sluice.settings import ConfigError, McpAccess, McpConfig, ToolRateLimitConfig, parse_config
from sluice.storage.records import VirtualKey

CONFIG = McpConfig.model_validate(
    {"tool_groups": [{"name": "docs", "tools": ["wiki/search"], "resources": ["wiki/page://*"], "prompts": ["wiki/*"]}]}
)


def key(**mcp: tuple[str, ...]) -> VirtualKey:
    return VirtualKey(id="vk", name="vk", key_hash="h", key_hint="k", team_id="t1", **mcp)  # type: ignore[arg-type]


def test_default_deny_and_patterns() -> None:
    access = ToolAccess(CONFIG)
    assert access.grants(key()).empty
    grants = access.grants(key(mcp_tools=("scanner/*", "git/log")))
    assert grants.tool("scanner", "scan") and grants.tool("git", "log")
    assert not grants.tool("git", "push") and not grants.resource("scanner", "x://y") and not grants.prompt("git", "p")
    assert grants.servers(["scanner", "git", "wiki"]) == ["scanner", "git"]


def test_groups_and_team_grants_add_up() -> None:
    access = ToolAccess(CONFIG)
    teams = {"t1": McpAccess(tools=["git/*"], tool_groups=["docs"])}
    grants = access.grants(key(mcp_tool_groups=("nonexistent",)), teams)
    assert grants.tool("git", "push") and grants.tool("wiki", "search") and not grants.tool("wiki", "edit")
    assert grants.resource("wiki", "page://home") and not grants.resource("wiki", "admin://x")
    assert grants.prompt("wiki", "summarise")
    assert access.grants(key(), {"other-team": McpAccess(tools=["*"])}).empty


def test_wire_names_round_trip() -> None:
    assert split_name("everything__get-sum") == ("everything", "get-sum")
    assert split_name("fs__read__file") == ("fs", "read__file")  # split on the first separator
    assert split_name("nosep") == ("", "") and split_name("__tool") == ("", "")
    uri = exposed_uri("everything", "demo://resource/static/document/1")
    assert uri == "sluice://everything/demo://resource/static/document/1"
    assert split_uri(uri) == ("everything", "demo://resource/static/document/1")
    assert split_uri("file:///etc/passwd") == ("", "")


def test_server_names_cannot_break_the_namespace() -> None:
    with pytest.raises(ConfigError, match="servers"):
        parse_config({"mcp": {"servers": [{"name": "a__b", "transport": "stdio", "command": "x"}]}})
    with pytest.raises(ConfigError, match="unique"):
        parse_config({"mcp": {"servers": [{"name": "a", "transport": "stdio", "command": "x"}] * 2}})
    with pytest.raises(ConfigError, match="fixed window"):
        parse_config({"mcp": {"rate_limits": [{"id": "r", "tools": ["a/*"], "max_calls": 1, "reset_duration": "1M"}]}})


def test_tool_rate_limit_counts_per_key_and_tool_in_fixed_windows() -> None:
    limits = ToolRateLimits([ToolRateLimitConfig(id="r", tools=["git/*"], max_calls=2, reset_duration="1m")])
    assert limits.admit("a", "git", "log", now=60.0) is None
    assert limits.admit("a", "git", "log", now=70.0) is None
    assert limits.admit("a", "git", "log", now=80.0) == ("r", 40.0)
    assert limits.admit("a", "git", "push", now=80.0) is None  # each tool its own count
    assert limits.admit("b", "git", "log", now=80.0) is None  # each key its own count
    assert limits.admit("a", "wiki", "search", now=80.0) is None  # not limited at all
    assert limits.admit("a", "git", "log", now=120.0) is None  # the next window


def test_session_calls_go_to_the_next_llm_call_of_their_session() -> None:
    calls = SessionCalls()
    calls.add("vk", "s1", "git__log")
    calls.add("vk", None, "wiki__search")  # the client sent no session id: any session of the key
    calls.add("vk", "s2", "git__push")
    assert calls.take("vk", "s1") == ("git__log", "wiki__search")
    assert calls.take("vk", "s1") == ()
    assert calls.take("other", "s2") == ()
    assert calls.take("vk", "s2") == ("git__push",)
