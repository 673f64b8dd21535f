"""The real Claude Code CLI lists and calls an MCP tool through the gateway (`--mcp-config` with
the gateway's `/mcp` and a virtual key), the model being the fake Anthropic API; the tool server
is the real server-everything behind the gateway."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice.formats import tool_names
from tests.fakes.agent_loop import Step, scripted
from tests.fakes.upstream import FakeUpstreamThread
from tests.integration.mcp_support import everything, require_servers
from tests.support import GatewayThread

CLAUDE = Path(__file__).parent / "node_modules" / ".bin" / "claude"
DEV = "sk-sluice-e2e-mcp-dev-0000000000"
TOOL = "mcp__sluice__everything__echo"  # Claude Code's name: mcp__<server as configured>__<our name>


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    if not CLAUDE.exists():
        pytest.fail("Claude Code is not installed: run `make e2e-deps` (make test does it)")
    require_servers()
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {
                    "base_url": upstream.base_url,
                    "keys": [{"name": "anthropic-e2e", "value": "sk-ant-e2e"}],
                },
                "openai": {
                    "base_url": upstream.base_url + "/v1",
                    "keys": [{"name": "openai-e2e", "value": "sk-oai-e2e"}],
                },
            },
            "mcp": {"servers": [everything()]},
            "virtual_keys": [
                {
                    "id": "vk-mcp-dev",
                    "value": DEV,
                    "provider_configs": [{"provider": "anthropic"}, {"provider": "openai"}],
                    "mcp": {"tools": ["everything/echo"]},
                }
            ],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("ccmcp")) as gateway:
            yield gateway, upstream


def run_claude(gateway: GatewayThread, tmp_path: Path, server_name: str, tool: str, model: str) -> None:
    mcp_config = tmp_path / "mcp.json"
    server = {"type": "http", "url": gateway.base_url + "/mcp", "headers": {"Authorization": f"Bearer {DEV}"}}
    mcp_config.write_text(json.dumps({"mcpServers": {server_name: server}}))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_AUTH_TOKEN": DEV,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "ENABLE_TOOL_SEARCH": "false",  # MCP tools in the request itself, not deferred behind a search tool
    }
    args = ["-p", f"please use a tool {tool}", "--model", model, "--output-format", "json"]
    args += ["--mcp-config", str(mcp_config), "--strict-mcp-config", "--allowedTools", tool]
    result = subprocess.run(
        [str(CLAUDE), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["is_error"] is False


def test_claude_code_lists_and_calls_an_mcp_tool_through_the_gateway(
    stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    run_claude(gateway, tmp_path, "sluice", TOOL, "claude-sonnet-4-6")

    posts = [r.json() for r in upstream.requests if r.method == "POST" and r.path == "/v1/messages"]
    offered = {t["name"] for body in posts for t in body.get("tools", [])}
    assert TOOL in offered
    assert not {n for n in offered if n.startswith("mcp__sluice__") and n != TOOL}  # only what the key may call
    results = [
        block
        for body in posts
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert results and "Echo: please use a tool" in json.dumps(results[-1]["content"])

    calls = [c for c in gateway.services.mcp.calls if c["virtual_key"] == "vk-mcp-dev"]
    assert [(c["kind"], c["server"], c["tool"], c["outcome"]) for c in calls] == [
        ("mcp_call", "everything", "echo", "ok")
    ]
    assert calls[0]["tool_use_id"] == results[-1]["tool_use_id"]  # Claude Code names the model's tool_use
    rows = [r for r in gateway.request_log() if r["virtual_key_id"] == "vk-mcp-dev"]
    assert [r["mcp_tools"] for r in rows if r["mcp_tools"]] == [["everything__echo"]]


# Configured under a long server name, Claude Code's name for the tool passes the 64 characters OpenAI takes.
LONG_SERVER = "sluice_gateway_with_a_long_configured_server_name"
LONG_TOOL = f"mcp__{LONG_SERVER}__everything__echo"


def test_claude_codes_long_mcp_tool_name_on_an_openai_model(
    stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    assert len(LONG_TOOL) > 64
    mapped = tool_names.target_name(LONG_TOOL, tool_names.OPENAI)
    step = Step(mapped, {"message": "through a renamed tool"})
    with scripted(upstream.upstream, step):  # the strict OpenAI fake refuses the long name; the model calls `mapped`
        run_claude(gateway, tmp_path, LONG_SERVER, LONG_TOOL, "gpt-4o-mini")
    posts = [r.json() for r in upstream.requests if r.method == "POST" and r.path == "/v1/chat/completions"]
    assert len(posts) >= 2
    for body in posts:
        assert mapped in {t["function"]["name"] for t in body["tools"]}
    results = [m for m in posts[-1]["messages"] if m["role"] == "tool"]
    assert results and "Echo: through a renamed tool" in json.dumps(results[-1]["content"])  # Claude Code ran it
    calls = [c for c in gateway.services.mcp.calls if c["virtual_key"] == "vk-mcp-dev" and c["kind"] == "mcp_call"]
    assert [(c["server"], c["tool"], c["outcome"]) for c in calls][-1:] == [("everything", "echo", "ok")]
