"""Each real agent CLI in a multi-turn tool loop on each vendor, through Sluice, against the strict fakes.

The fake model (tests.fakes.agent_loop) first calls the CLI's own tool that writes a file (Claude Code's
Write, Codex's exec_command, Gemini CLI's write_file), the CLI runs it (the file appears in its working
directory), sends the result back, and the model answers with its final text. Every request is held to the
rules of the vendor's real API first (the strict fakes), so a turn that loses round-trip state (thinking
signatures, thought signatures, call ids) or writes a field the vendor refuses fails here. Each turn is a
200 row with tokens in the request log. One gateway process and one fake serve every cell."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import agent_cli
from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.agent_loop import Step, scripted
from tests.fakes.aws_wire import AwsAccount
from tests.fakes.cloud import CloudFakeThread, CloudSettings
from tests.fakes.upstream import FakeUpstreamThread

KEY = "sk-sluice-e2e-agent-loops-0000000"
CONTENT = "written by the agent loop"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeUpstreamThread]]:
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-loop"}]},
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai-loop"}]},
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-loop"}]},
            },
            # No budgets or rate limits: the turns that Codex leaves at response.completed are 200s all the same.
            "virtual_keys": [
                {
                    "id": "vk-loop",
                    "value": KEY,
                    "provider_configs": [{"provider": "anthropic"}, {"provider": "openai"}, {"provider": "gemini"}],
                }
            ],
        }
        with GatewayProcess(config, tmp_path_factory.mktemp("loop-gw")) as gateway:
            yield gateway, upstream


def run_claude_code(gateway: GatewayProcess, home: Path, model: str, prompt: str) -> str:
    env = {
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_AUTH_TOKEN": KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP": "1",
    }
    argv = [str(agent_cli.installed("claude")), "-p", prompt, "--model", model, "--output-format", "json"]
    result = agent_cli.run([*argv, "--permission-mode", "acceptEdits"], home, env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["is_error"] is False, out
    return str(out["result"])


def run_codex(gateway: GatewayProcess, home: Path, model: str, prompt: str) -> str:
    agent_cli.connect("codex", gateway.base_url, KEY, home, "--model", model)
    argv = [str(agent_cli.installed("codex")), "exec", "--skip-git-repo-check"]
    argv += ["--dangerously-bypass-approvals-and-sandbox"]  # the tool writes a file in the working directory
    argv += ["-c", "model_providers.sluice.request_max_retries=0", "-c", "model_providers.sluice.stream_max_retries=0"]
    if not model.startswith("gpt-"):
        argv += ["-c", "features.multi_agent=false", "-c", 'web_search="disabled"']  # docs/agents/codex.md
    result = agent_cli.run([*argv, prompt], home, {"SLUICE_API_KEY": KEY}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_gemini_cli(gateway: GatewayProcess, home: Path, model: str, prompt: str) -> str:
    out = agent_cli.connect("gemini-cli", gateway.base_url, KEY, home, "--model", model)
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    env["GEMINI_CLI_TRUST_WORKSPACE"] = "true"
    argv = [str(agent_cli.installed("gemini")), "--approval-mode", "yolo", "-p", prompt]
    result = agent_cli.run(argv, home, env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


CELLS = [
    # (CLI, model: its vendor, pass-through or translated)
    ("claude-code", "claude-sonnet-4-6"),  # Anthropic, pass-through
    ("claude-code", "gpt-5-mini"),  # OpenAI Chat Completions, translated
    ("claude-code", "gemini-3-pro-preview"),  # Gemini 3 (thought signatures), translated
    ("codex", "gpt-5.5"),  # OpenAI Responses, pass-through
    ("codex", "claude-sonnet-4-6"),  # Anthropic with reasoning (thinking round trip), translated
    ("codex", "gemini-3-pro-preview"),  # Gemini 3, translated
    ("gemini-cli", "gemini-3-pro-preview"),  # Gemini, pass-through
    ("gemini-cli", "claude-sonnet-4-6"),  # Anthropic (sampling, thinking round trip), translated
    ("gemini-cli", "gpt-5-mini"),  # OpenAI Chat Completions (a reasoning model), translated
]


@pytest.mark.parametrize(("cli", "model"), CELLS, ids=[f"{c}-{m}" for c, m in CELLS])
def test_agent_tool_loop(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path, cli: str, model: str
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    # The provider holds its connection a moment after its last event, as real ones may: Codex leaves at
    # response.completed, and its turns must still be 200s (not 499) on a key without limits.
    upstream.upstream.tail_delay = 0.5
    work = tmp_path / "work"
    work.mkdir()
    target = work / "loop.txt"
    before = len(agent_cli.log_rows(gateway.db, "vk-loop", 0, wait=0))
    if cli == "claude-code":
        step = Step("Write", {"file_path": str(target), "content": CONTENT + "\n"})
        with scripted(upstream.upstream, step):
            answer = run_claude_code(gateway, tmp_path, model, "write the file loop.txt")
    elif cli == "codex":
        step = Step("exec_command", {"cmd": f"echo '{CONTENT}' > loop.txt"})
        with scripted(upstream.upstream, step):
            answer = run_codex(gateway, tmp_path, model, "write the file loop.txt")
    else:
        step = Step("write_file", {"file_path": str(target), "content": CONTENT + "\n"})
        with scripted(upstream.upstream, step):
            answer = run_gemini_cli(gateway, tmp_path, model, "write the file loop.txt")
    # The tool really ran ...
    assert target.read_text().strip() == CONTENT
    # ... and the model's final answer (the fake echoes the last user text) reached the user.
    assert "echo: " in answer or "loop.txt" in answer, answer
    posts = [r for r in upstream.requests if r.method == "POST"]
    assert len(posts) >= 2, [r.path for r in posts]
    rows = agent_cli.log_rows(gateway.db, "vk-loop", before + len(posts))[before:]
    assert [r["status"] for r in rows] == [200] * len(posts), [(r["status"], r["reason"]) for r in rows]
    # Gemini CLI sends its own current name for a Gemini 3 model (gemini-3.1-pro-preview for gemini-3-pro-preview).
    family = model.split("-")[0] + "-" + model.split("-")[1][:1]
    assert all(r["model"].startswith(family) for r in rows), [r["model"] for r in rows]
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows), rows


AWS = AwsAccount("AKIAE2ELOOPEXAMPLE0", "e2e/loop/KEY/0123456789abcdefEXAMPLE", None, "us-west-2")
NOVA = "amazon.nova-pro-v1:0"  # not an Anthropic model: Bedrock takes it through the Converse API


@pytest.fixture(scope="module")
def bedrock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, CloudFakeThread]]:
    with CloudFakeThread(CloudSettings(aws=AWS)) as fake:
        provider = {"base_url": fake.base_url, "region": AWS.region}
        provider |= {"access_key_id": AWS.access_key_id, "secret_access_key": AWS.secret_access_key}
        config = {
            "providers": {"bedrock": provider},
            "virtual_keys": [{"id": "vk-loop", "value": KEY, "provider_configs": [{"provider": "bedrock"}]}],
        }
        with GatewayProcess(config, tmp_path_factory.mktemp("loop-bedrock")) as gateway:
            yield gateway, fake


def test_claude_code_tool_loop_on_bedrock_converse(
    bedrock: tuple[GatewayProcess, CloudFakeThread], tmp_path: Path
) -> None:
    gateway, fake = bedrock
    work = tmp_path / "work"
    work.mkdir()
    target = work / "loop.txt"
    with scripted(fake.upstream, Step("Write", {"file_path": str(target), "content": CONTENT + "\n"})):
        answer = run_claude_code(gateway, tmp_path, NOVA, "write the file loop.txt")
    assert target.read_text().strip() == CONTENT and "echo: " in answer
    posts = [r for r in fake.requests if r.method == "POST" and "/converse" in r.path]
    assert len(posts) >= 2, [r.path for r in fake.requests]
    rows = agent_cli.log_rows(gateway.db, "vk-loop", len(posts))
    assert [(r["status"], r["provider"], r["model"]) for r in rows] == [(200, "bedrock", NOVA)] * len(posts)
    assert all(r["input_tokens"] > 0 and r["output_tokens"] > 0 for r in rows), rows
