"""The real Claude Code CLI on models of other vendors: its Messages requests (system blocks with cache_control,
twenty-odd tools, thinking, metadata) translated for a fake OpenAI and a fake Gemini API, and the streamed answers
translated back into the Messages events Claude Code reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_claude_code import CLAUDE, run_claude
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-e2e-translated-000000000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    if not CLAUDE.exists():
        pytest.fail("Claude Code is not installed: run `make e2e-deps` (make test does it)")
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai-e2e"}]},
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-e2e"}]},
            },
            "virtual_keys": [
                {"id": "vk-cc", "value": KEY, "provider_configs": [{"provider": "openai"}, {"provider": "gemini"}]}
            ],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("cc-translated")) as gateway:
            yield gateway, upstream


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("gpt-4o-mini", "/v1/chat/completions"),
        ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
    ],
)
def test_claude_code_on_another_vendors_model(
    stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path, model: str, path: str
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    result = run_claude(gateway.base_url, KEY, "say hi to the gateway", model, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # The fakes echo the last user text: the prompt, or (Gemini, whose turns alternate) the environment notes
    # Claude Code sends after it, which reach Gemini as a `<system>` user turn.
    assert out["is_error"] is False and out["result"].startswith("echo: ")
    posts = [r for r in upstream.requests if r.method == "POST" and r.path == path]
    assert posts, f"nothing reached {path}: {[r.path for r in upstream.requests]}"
    body = posts[-1].json()
    assert "say hi to the gateway" in json.dumps(body)
    tools = (
        body["tools"]
        if "tools" in body and model.startswith("gpt")
        else body.get("tools", [{}])[0].get("functionDeclarations", [])
    )
    assert len(tools) > 10  # Claude Code's own tools, in the provider's format
    rows = [r for r in gateway.request_log() if r["status"] == 200 and r["model"] == model]
    assert rows and rows[0]["output_tokens"] > 0 and rows[0]["client"].startswith("claude-cli/")
