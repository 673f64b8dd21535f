"""The pinned agent CLIs on their default models, through the gateway to the fake upstream, on a key
with a dollar budget: their requests are served and charged, never passed at $0 (issue 12,
"Price data that keeps up")."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import agent_cli
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-e2e-defaults-0000000000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-e2e"}]},
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai-e2e"}]},
            },
            "virtual_keys": [
                {
                    "id": "vk-defaults",
                    "value": KEY,
                    "provider_configs": [{"provider": "anthropic"}, {"provider": "openai"}],
                }
            ],
            # No pricing section: the bundled data must price what the agents ask for.
            "budgets": [{"id": "b-defaults", "virtual_key_id": "vk-defaults", "max_limit": 50, "reset_duration": "1d"}],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("defaults")) as gateway:
            yield gateway, upstream


def _charged(gateway: GatewayThread, model: str) -> list[dict[str, object]]:
    rows = [r for r in gateway.request_log() if r["virtual_key_id"] == "vk-defaults" and r["model"] == model]
    assert rows, f"no request log row for {model}"
    return rows


def test_claude_code_default_model_is_charged(stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path) -> None:
    # Fails on main without the fix: claude-opus-5-5 had no price, so it was served at $0.
    gateway, upstream = stack
    upstream.upstream.reset()
    agent_cli.connect("claude-code", gateway.base_url, KEY, tmp_path)  # no --model: Claude Code's own default
    env = {"CLAUDE_CODE_MAX_RETRIES": "0", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    result = agent_cli.run(
        [str(agent_cli.installed("claude")), "-p", "say hi", "--output-format", "json"], tmp_path, env
    )
    assert result.returncode == 0, result.stdout + result.stderr
    models = {r.json()["model"] for r in upstream.requests if r.method == "POST"}
    assert "claude-opus-5-5" in models
    for model in models:
        assert all(row["status"] == 200 and row["cost_pico"] > 0 for row in _charged(gateway, model))  # type: ignore[operator]


def test_codex_default_model_is_charged(stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path) -> None:
    # Fails on main without the fix: gpt-6.2-sol had no price, so it was served at $0.
    gateway, upstream = stack
    upstream.upstream.reset()
    agent_cli.connect("codex", gateway.base_url, KEY, tmp_path)  # no --model: Codex's own default
    argv = [str(agent_cli.installed("codex")), "exec", "--skip-git-repo-check"]
    argv += ["-c", "model_providers.sluice.request_max_retries=0", "-c", "model_providers.sluice.stream_max_retries=0"]
    result = agent_cli.run([*argv, "say hi"], tmp_path, {"SLUICE_API_KEY": KEY})
    assert result.returncode == 0, result.stdout + result.stderr
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    assert sent.json()["model"] == "gpt-6.2-sol"
    [row] = _charged(gateway, "gpt-6.2-sol")
    assert row["status"] == 200 and row["cost_pico"] > 0  # type: ignore[operator]
