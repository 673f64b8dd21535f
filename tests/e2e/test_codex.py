"""The real Codex CLI (npm @openai/codex, pinned in tests/e2e/package.json) set up by `sluice connect codex`,
through a `sluice serve` process, to a fake OpenAI Responses API and a fake Anthropic API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import agent_cli
from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.upstream import FakeUpstreamThread

KEY = "sk-sluice-e2e-codex-000000000000"
BROKE = "sk-sluice-e2e-codex-broke-000000"
OPENAI_SECRET = "sk-openai-e2e-provider-secret"
ANTHROPIC_SECRET = "sk-ant-e2e-provider-secret"
GEMINI_SECRET = "AIza-e2e-provider-secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeUpstreamThread]]:
    agent_cli.installed("codex")
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": OPENAI_SECRET}]},
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": ANTHROPIC_SECRET}]},
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": GEMINI_SECRET}]},
            },
            "virtual_keys": [
                {
                    "id": "vk-codex",
                    "value": KEY,
                    "provider_configs": [
                        {"provider": "openai", "allowed_models": ["gpt-5.5"]},
                        {"provider": "anthropic", "allowed_models": ["claude-sonnet-4-6"]},
                        {"provider": "gemini", "allowed_models": ["gemini-2.5-flash"]},
                    ],
                },
                {"id": "vk-codex-broke", "value": BROKE, "provider_configs": [{"provider": "openai"}]},
            ],
            # Codex 0.171's own model, not yet in the bundled price table.
            "pricing": {"gpt-5.5": {"input_cost_per_mtok": 1.25, "output_cost_per_mtok": 10}},
            "budgets": [
                {"id": "codex-broke", "virtual_key_id": "vk-codex-broke", "max_limit": 0.0001, "reset_duration": "1d"}
            ],
        }
        with GatewayProcess(config, tmp_path_factory.mktemp("codex-gw")) as gateway:
            yield gateway, upstream


def run_codex(
    gateway: GatewayProcess, home: Path, key: str, model: str, prompt: str, *overrides: str
) -> tuple[int, str, str]:
    agent_cli.connect("codex", gateway.base_url, key, home, "--model", model)  # the model is in config.toml
    argv = [str(agent_cli.installed("codex")), "exec", "--skip-git-repo-check"]
    argv += [arg for override in overrides for arg in ("-c", override)]
    # No retries: a refusal shows at once instead of after five reconnects.
    argv += ["-c", "model_providers.sluice.request_max_retries=0", "-c", "model_providers.sluice.stream_max_retries=0"]
    result = agent_cli.run([*argv, prompt], home, {"SLUICE_API_KEY": key})
    return result.returncode, result.stdout, result.stderr


def test_codex_through_the_gateway_to_openai(stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    code, out, err = run_codex(gateway, tmp_path, KEY, "gpt-5.5", "say hi to the gateway")
    assert code == 0, out + err
    assert "echo: say hi to the gateway" in out
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    assert sent.path == "/v1/responses"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_SECRET}" and KEY not in json.dumps(sent.headers)
    body = sent.json()
    # Codex's own body, passed through untouched.
    assert body["model"] == "gpt-5.5" and body["store"] is False and body["stream"] is True
    assert body["include"] == ["reasoning.encrypted_content"]
    assert [item["role"] for item in body["input"]][:2] == ["developer", "developer"]
    assert {"function", "custom", "web_search"} <= {tool["type"] for tool in body["tools"]}
    [row] = agent_cli.log_rows(gateway.db, "vk-codex", model="gpt-5.5")
    assert row["status"] == 200 and row["surface"] == "openai_responses" and row["provider"] == "openai"
    assert row["client"].startswith("codex_exec/0.171")
    assert row["session_id"] == body["prompt_cache_key"]  # Codex's session-id header
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["cost_pico"] > 0


def translated_rows(gateway: GatewayProcess, count: int = 0) -> list[dict[str, object]]:
    return agent_cli.log_rows(gateway.db, "vk-codex", count, model="claude-sonnet-4-6", status=200)


def check_translated_to_anthropic(
    gateway: GatewayProcess, upstream: FakeUpstreamThread, code: int, out: str, err: str, logged_before: int
) -> None:
    assert code == 0, out + err
    assert "echo: say hi to claude" in out
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == ANTHROPIC_SECRET
    body = sent.json()
    assert body["model"] == "claude-sonnet-4-6" and body["stream"] is True
    assert "Codex" in json.dumps(body["system"])  # the developer items became the system prompt
    assert "exec_command" in {tool["name"] for tool in body["tools"]}
    rows = translated_rows(gateway, logged_before + 1)
    assert len(rows) == logged_before + 1
    row = rows[-1]
    assert row["provider"] == "anthropic" and row["surface"] == "openai_responses"
    assert row["output_tokens"] > 0 and row["cost_pico"] > 0


def test_codex_on_a_claude_model_is_translated(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    before = len(translated_rows(gateway))
    code, out, err = run_codex(gateway, tmp_path, KEY, "claude-sonnet-4-6", "say hi to claude")
    check_translated_to_anthropic(gateway, upstream, code, out, err, before)
    # Codex's default tools: its sub-agent namespace flattened, its hosted web search left out (and said).
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    names = {tool["name"] for tool in sent.json()["tools"]}
    assert "multi_agent_v1__spawn_agent" in names and "web_search" not in names
    assert json.loads(str(translated_rows(gateway)[-1]["attempts"]))[0]["dropped_tools"] == ["web_search"]


def test_codex_on_a_claude_model_with_function_tools_only(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    # Today's set-up for Codex on another vendor's model (docs/agents/codex.md): without sub-agents and
    # hosted web search Codex sends function tools only, which every format has.
    gateway, upstream = stack
    upstream.upstream.reset()
    overrides = ("features.multi_agent=false", 'web_search="disabled"')
    before = len(translated_rows(gateway))
    code, out, err = run_codex(gateway, tmp_path, KEY, "claude-sonnet-4-6", "say hi to claude", *overrides)
    check_translated_to_anthropic(gateway, upstream, code, out, err, before)


def test_codex_on_a_gemini_model_is_translated(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    before = len(gemini_rows(gateway, 0))  # the module's gateway served earlier tests too
    code, out, err = run_codex(gateway, tmp_path, KEY, "gemini-2.5-flash", "say hi to gemini by default")
    assert code == 0, out + err
    assert "say hi to gemini by default" in out
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    names = {d["name"] for tool in sent.json()["tools"] for d in tool.get("functionDeclarations", ())}
    assert {"exec_command", "multi_agent_v1__spawn_agent"} <= names and "web_search" not in names
    row = gemini_rows(gateway, before + 1)[-1]
    assert row["provider"] == "gemini" and json.loads(row["attempts"])[0]["dropped_tools"] == ["web_search"]


def test_codex_on_a_gemini_model_with_function_tools_only(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    before = len(gemini_rows(gateway, 0))  # the module's gateway served earlier tests too
    overrides = ("features.multi_agent=false", 'web_search="disabled"')
    code, out, err = run_codex(gateway, tmp_path, KEY, "gemini-2.5-flash", "say hi to gemini", *overrides)
    assert code == 0, out + err
    assert "say hi to gemini" in out
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    assert sent.headers["x-goog-api-key"] == GEMINI_SECRET
    body = sent.json()
    assert "Codex" in json.dumps(body["systemInstruction"])
    assert "exec_command" in {d["name"] for d in body["tools"][0]["functionDeclarations"]}
    row = gemini_rows(gateway, before + 1)[-1]
    assert row["provider"] == "gemini" and row["surface"] == "openai_responses" and row["output_tokens"] > 0


def gemini_rows(gateway: GatewayProcess, count: int) -> list[dict[str, object]]:
    return agent_cli.log_rows(gateway.db, "vk-codex", count, model="gemini-2.5-flash", status=200)


def test_codex_stops_at_once_on_an_exhausted_budget(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    code, _, err = run_codex(gateway, tmp_path, BROKE, "gpt-5.5", "say hi")
    assert code == 1
    # Sluice answers 429 insufficient_quota; Codex shows its own wording for it, and does not retry.
    assert "Quota exceeded" in err
    assert [r for r in upstream.requests if r.method == "POST"] == []
    [row] = agent_cli.log_rows(gateway.db, "vk-codex-broke")
    assert row["status"] == 429


def test_codex_tool_loop_on_a_claude_model(stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path) -> None:
    # The fake Anthropic API calls the first tool (exec_command) with the prompt as its `cmd` when asked to
    # "use a tool"; Codex runs it in its read-only sandbox and sends the output back as a function_call_output.
    gateway, upstream = stack
    upstream.upstream.reset()
    overrides = ("features.multi_agent=false", 'web_search="disabled"')
    code, out, err = run_codex(gateway, tmp_path, KEY, "claude-sonnet-4-6", "echo use a tool", *overrides)
    assert code == 0, out + err
    first, second = [r.json() for r in upstream.requests if r.method == "POST"]
    assert first["tools"][0]["name"] == "exec_command"
    [assistant, results] = second["messages"][-2:]
    [tool_use] = [b for b in assistant["content"] if b["type"] == "tool_use"]
    [tool_result] = [b for b in results["content"] if b["type"] == "tool_result"]
    assert tool_use["name"] == "exec_command" and tool_result["tool_use_id"] == tool_use["id"]
    assert "use a tool" in json.dumps(tool_result["content"])  # what `echo` printed
