"""The real Gemini CLI (npm @google/gemini-cli, pinned in tests/e2e/package.json) set up by
`sluice connect gemini-cli`, through a `sluice serve` process, to a fake Gemini API and a fake Anthropic API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import agent_cli
from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.upstream import FakeUpstreamThread

KEY = "sk-sluice-e2e-gemini-00000000000"
GEMINI_SECRET = "AIza-e2e-provider-secret"
ANTHROPIC_SECRET = "sk-ant-e2e-provider-secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeUpstreamThread]]:
    agent_cli.installed("gemini")
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": GEMINI_SECRET}]},
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": ANTHROPIC_SECRET}]},
            },
            "virtual_keys": [
                {
                    "id": "vk-gemini",
                    "value": KEY,
                    "provider_configs": [
                        {"provider": "gemini", "allowed_models": ["gemini-2.5-flash"]},
                        {"provider": "anthropic", "allowed_models": ["claude-sonnet-4-6"]},
                    ],
                }
            ],
        }
        with GatewayProcess(config, tmp_path_factory.mktemp("gemini-gw")) as gateway:
            yield gateway, upstream


def run_gemini(gateway: GatewayProcess, home: Path, model: str, prompt: str) -> tuple[int, str, str]:
    out = agent_cli.connect("gemini-cli", gateway.base_url, KEY, home, "--model", model)
    # The exports `sluice connect` prints, as the user's shell profile would have them.
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    # Headless runs need a trusted folder (otherwise exit 55). The model comes from settings.json (model.name),
    # which also spares the 'auto' routing call.
    env["GEMINI_CLI_TRUST_WORKSPACE"] = "true"
    argv = [str(agent_cli.installed("gemini")), "-p", prompt]
    result = agent_cli.run(argv, home, env)
    return result.returncode, result.stdout, result.stderr


def test_gemini_cli_through_the_gateway_to_gemini(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    code, out, err = run_gemini(gateway, tmp_path, "gemini-2.5-flash", "say hi to the gateway")
    assert code == 0, out + err
    assert "say hi to the gateway" in out  # the fake echoes the prompt
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and sent.query == "alt=sse"
    assert sent.headers["x-goog-api-key"] == GEMINI_SECRET and KEY not in json.dumps(sent.headers)
    # usageStatisticsEnabled is off (sluice connect), so no installation id rides along.
    assert "x-gemini-api-privileged-user-id" not in sent.headers
    body = sent.json()
    assert set(body) == {"contents", "systemInstruction", "tools", "generationConfig"}
    assert "parametersJsonSchema" in body["tools"][0]["functionDeclarations"][0]
    [row] = agent_cli.log_rows(gateway.db, "vk-gemini", model="gemini-2.5-flash", status=200)
    assert row["surface"] == "gemini" and row["provider"] == "gemini" and row["stream"]
    assert row["client"].startswith("GeminiCLI-tui/0.61.0/gemini-2.5-flash")
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["cost_pico"] > 0


def test_gemini_cli_on_a_claude_model_is_translated(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    code, out, err = run_gemini(gateway, tmp_path, "claude-sonnet-4-6", "say hi to claude")
    assert code == 0, out + err
    assert "say hi to claude" in out
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == ANTHROPIC_SECRET
    body = sent.json()
    assert body["model"] == "claude-sonnet-4-6" and body["stream"] is True
    assert "read_file" in {tool["name"] for tool in body["tools"]}
    [row] = agent_cli.log_rows(gateway.db, "vk-gemini", model="claude-sonnet-4-6", status=200)
    assert row["provider"] == "anthropic" and row["surface"] == "gemini" and row["output_tokens"] > 0


def test_gemini_cli_tool_loop_on_a_claude_model(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    # The fake Anthropic API calls the first tool when asked to "use a tool"; Gemini CLI runs it and sends the
    # result back: functionCall/functionResponse on one side, tool_use/tool_result on the other.
    gateway, upstream = stack
    upstream.upstream.reset()
    code, out, err = run_gemini(gateway, tmp_path, "claude-sonnet-4-6", "please use a tool")
    assert code == 0, out + err
    first, second = [r.json() for r in upstream.requests if r.method == "POST"]
    [call] = [b for b in first["messages"][-1]["content"] if b["type"] == "text"][-1:]
    assert "use a tool" in call["text"]
    [assistant, results] = second["messages"][-2:]
    [tool_use] = [b for b in assistant["content"] if b["type"] == "tool_use"]
    [tool_result] = [b for b in results["content"] if b["type"] == "tool_result"]
    assert tool_result["tool_use_id"] == tool_use["id"] and tool_use["name"] == first["tools"][0]["name"]


def test_gemini_cli_shows_the_403_for_a_model_outside_the_allowlist(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    code, out, err = run_gemini(gateway, tmp_path, "gemini-2.5-pro", "say hi")
    assert code == 1
    # Google's error shape, so the CLI prints the gateway's reason (a 403 is not retried).
    assert "PERMISSION_DENIED" in err and "not allowed for virtual key 'vk-gemini'" in err, out + err
    assert [r for r in upstream.requests if r.method == "POST"] == []
