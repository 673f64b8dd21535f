"""The real Claude Code CLI (npm @anthropic-ai/claude-code, pinned in tests/e2e/package.json)
through the gateway to a fake Anthropic API."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agent_cli import connect, run
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

CLAUDE = Path(__file__).parent / "node_modules" / ".bin" / "claude"
SENIOR = "sk-sluice-e2e-senior-00000000000"
JUNIOR = "sk-sluice-e2e-junior-00000000000"
BROKE = "sk-sluice-e2e-broke-000000000000"
PROVIDER_SECRET = "sk-ant-e2e-provider-secret"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    if not CLAUDE.exists():
        pytest.fail("Claude Code is not installed: run `make e2e-deps` (make test does it)")
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {
                    "base_url": upstream.base_url,
                    "keys": [{"name": "anthropic-e2e", "value": PROVIDER_SECRET}],
                }
            },
            "virtual_keys": [
                {
                    "id": "vk-eng-senior",
                    "name": "Senior Engineering Pool",
                    "value": SENIOR,
                    "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-sonnet-4-6"]}],
                },
                {
                    "id": "vk-eng-junior",
                    "name": "Junior Engineering Pool",
                    "value": JUNIOR,
                    "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5-20251001"]}],
                },
                {"id": "vk-broke", "value": BROKE, "provider_configs": [{"provider": "anthropic"}]},
            ],
            # Claude Code's requests reserve about $0.60 each (32,000 max_tokens of Sonnet).
            "budgets": [
                {
                    "id": "budget-broke",
                    "virtual_key_id": "vk-broke",
                    "max_limit": 0.05,
                    "reset_duration": "1d",
                    "calendar_aligned": True,
                }
            ],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("cc")) as gateway:
            yield gateway, upstream


def run_claude(base_url: str, token: str, prompt: str, model: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": token,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        # Without these a refused request is retried for minutes, and old model names are remapped.
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP": "1",
    }
    return subprocess.run(
        [str(CLAUDE), "-p", prompt, "--model", model, "--output-format", "json"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
    )


def test_claude_code_through_the_gateway(stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    result = run_claude(gateway.base_url, SENIOR, "say hi to the gateway", "claude-sonnet-4-6", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["is_error"] is False and out["result"]
    posts = [r for r in upstream.requests if r.method == "POST"]
    assert posts, "Claude Code's request never reached the upstream"
    sent = posts[-1]
    assert sent.path == "/v1/messages" and "beta=true" in sent.query
    assert sent.headers["x-api-key"] == PROVIDER_SECRET and "authorization" not in sent.headers
    assert SENIOR not in json.dumps(sent.headers)
    assert "claude-code-20250219" in sent.headers["anthropic-beta"]
    body = sent.json()
    assert body["stream"] is True and len(body["tools"]) > 10  # the real agent payload, untouched
    rows = [r for r in gateway.request_log() if r["virtual_key_id"] == "vk-eng-senior" and r["status"] == 200]
    assert rows, "no request log entry for Claude Code's call"
    row = rows[0]
    assert row["client"].startswith("claude-cli/")
    # The session id comes from X-Claude-Code-Session-Id, the same as inside metadata.user_id.
    assert row["session_id"] == json.loads(body["metadata"]["user_id"])["session_id"]
    assert row["output_tokens"] > 0 and row["cost_pico"] > 0


def test_claude_code_shows_the_403_for_a_model_outside_the_allowlist(
    stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    result = run_claude(gateway.base_url, JUNIOR, "say hi", "claude-sonnet-4-6", tmp_path)
    assert result.returncode == 1
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["is_error"] is True
    assert "Model 'claude-sonnet-4-6' is not allowed for virtual key 'vk-eng-junior'" in out["result"]
    assert "claude-haiku-4-5-20251001" in out["result"]  # and it says what is allowed
    assert [r for r in upstream.requests if r.method == "POST"] == []


def test_claude_code_stops_at_once_on_an_exhausted_budget(
    stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    result = run_claude(gateway.base_url, BROKE, "say hi", "claude-sonnet-4-6", tmp_path)
    assert result.returncode == 1
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["is_error"] is True
    assert "402" in out["result"] and "Budget 'budget-broke'" in out["result"] and "resets at" in out["result"]
    assert [r for r in upstream.requests if r.method == "POST"] == []
    refused = [r for r in gateway.request_log() if r["virtual_key_id"] == "vk-broke"]
    assert len(refused) == 1 and refused[0]["status"] == 402  # shown once, not retried


def test_claude_code_set_up_by_sluice_connect(stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path) -> None:
    # No ANTHROPIC_* variables: everything comes from the settings.json that `sluice connect --write` made.
    gateway, upstream = stack
    upstream.upstream.reset()
    connect("claude-code", gateway.base_url, SENIOR, tmp_path, "--model", "claude-sonnet-4-6")
    env = {"CLAUDE_CODE_MAX_RETRIES": "0", "DISABLE_AUTOUPDATER": "1"}
    result = run([str(CLAUDE), "-p", "say hi", "--output-format", "json"], tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["is_error"] is False
    [sent] = [r for r in upstream.requests if r.method == "POST"]
    assert sent.json()["model"] == "claude-sonnet-4-6"  # ANTHROPIC_MODEL from the settings
    session = json.loads(sent.json()["metadata"]["user_id"])["session_id"]
    [row] = [r for r in gateway.request_log() if r["session_id"] == session]
    assert row["virtual_key_id"] == "vk-eng-senior" and row["status"] == 200
