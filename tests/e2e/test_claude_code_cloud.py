"""The real Claude Code CLI in Bedrock mode and in Vertex mode, through the gateway's /bedrock and
/vertex surfaces, to fake Bedrock (SigV4 verified, event-stream framing) and Vertex (service-account
JWT verified) upstreams: the whole chain speaks each cloud's own wire format."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.fakes.aws_wire import AwsAccount
from tests.fakes.cloud import CloudFakeThread, CloudSettings, make_service_account
from tests.support import GatewayThread

CLAUDE = Path(__file__).parent / "node_modules" / ".bin" / "claude"
KEY = "sk-sluice-e2e-cloud-000000000000"
BROKE = "sk-sluice-e2e-cloud-broke-000000"
AWS = AwsAccount("AKIAE2EEXAMPLE00000", "e2e/secret/KEY/0123456789abcdefEXAMPLE", None, "us-west-2")
SONNET_ON_BEDROCK = "us.anthropic.claude-sonnet-4-6"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, CloudFakeThread]]:
    if not CLAUDE.exists():
        pytest.fail("Claude Code is not installed: run `make e2e-deps` (make test does it)")
    account = make_service_account("e2e-project")
    with CloudFakeThread(CloudSettings(aws=AWS, vertex=account)) as fake:
        config = {
            "providers": {
                "bedrock": {
                    "base_url": fake.base_url,
                    "region": AWS.region,
                    "access_key_id": AWS.access_key_id,
                    "secret_access_key": AWS.secret_access_key,
                    "models": {"claude-sonnet-4-6": SONNET_ON_BEDROCK},
                },
                "vertex": {
                    "base_url": fake.base_url,
                    "region": "us-east5",
                    "credentials": orjson.dumps(account.info).decode(),
                },
            },
            "virtual_keys": [
                {
                    "id": "vk-cloud",
                    "value": KEY,
                    "provider_configs": [
                        {"provider": "bedrock", "allowed_models": ["claude-sonnet-4-6"]},
                        {"provider": "vertex", "allowed_models": ["claude-haiku-4-5"]},
                    ],
                },
                {
                    "id": "vk-cloud-broke",
                    "value": BROKE,
                    "provider_configs": [{"provider": "bedrock", "allowed_models": ["claude-sonnet-4-6"]}],
                },
            ],
            # Claude Code's requests reserve about $0.60 each (32,000 max_tokens of Sonnet).
            "budgets": [
                {"id": "budget-cloud", "virtual_key_id": "vk-cloud-broke", "max_limit": 0.05, "reset_duration": "1d"}
            ],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("cc-cloud")) as gateway:
            yield gateway, fake


def run_claude(env: dict[str, str], model: str, home: Path) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    return subprocess.run(
        [str(CLAUDE), "-p", "say hi to the cloud", "--model", model, "--output-format", "json"],
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
    )


@pytest.mark.parametrize("auth", ["bedrock-api-key", "skip-auth-custom-header"])
def test_claude_code_in_bedrock_mode(stack: tuple[GatewayThread, CloudFakeThread], tmp_path: Path, auth: str) -> None:
    gateway, fake = stack
    fake.upstream.reset()
    env = {"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_BEDROCK_BASE_URL": gateway.base_url + "/bedrock"}
    env["AWS_REGION"] = "us-west-2"
    if auth == "bedrock-api-key":
        env["AWS_BEARER_TOKEN_BEDROCK"] = KEY  # the virtual key, as a Bedrock API key
    else:
        env["CLAUDE_CODE_SKIP_BEDROCK_AUTH"] = "1"
        env["ANTHROPIC_CUSTOM_HEADERS"] = f"Authorization: Bearer {KEY}"
    result = run_claude(env, "claude-sonnet-4-6", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["is_error"] is False and out["result"].startswith("echo:")
    sent = [r for r in fake.requests if r.method == "POST" and r.path.startswith("/model/")]
    assert sent and sent[-1].path == f"/model/{SONNET_ON_BEDROCK}/invoke-with-response-stream"
    assert sent[-1].headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAE2EEXAMPLE00000/")
    body = sent[-1].json()
    assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body and len(body["tools"]) > 10
    # Claude Code's own split of betas between body and header reaches Bedrock unchanged.
    assert "claude-code-20250219" not in body.get("anthropic_beta", []) and body.get("anthropic_beta")
    rows = [r for r in gateway.request_log() if r["virtual_key_id"] == "vk-cloud" and r["provider"] == "bedrock"]
    assert rows and rows[0]["status"] == 200 and rows[0]["output_tokens"] > 0
    assert rows[0]["client"].startswith("claude-cli/") and rows[0]["session_id"] == out["session_id"]


def test_claude_code_in_vertex_mode(stack: tuple[GatewayThread, CloudFakeThread], tmp_path: Path) -> None:
    gateway, fake = stack
    fake.upstream.reset()
    env = {
        "CLAUDE_CODE_USE_VERTEX": "1",
        "ANTHROPIC_VERTEX_BASE_URL": gateway.base_url + "/vertex/v1",
        "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1",
        "ANTHROPIC_VERTEX_PROJECT_ID": "whatever-the-agent-says",
        "CLOUD_ML_REGION": "us-east5",
        "ANTHROPIC_CUSTOM_HEADERS": f"Authorization: Bearer {KEY}",
    }
    result = run_claude(env, "claude-haiku-4-5", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["is_error"] is False and out["result"].startswith("echo:")
    sent = [r for r in fake.requests if r.method == "POST" and r.path.startswith("/v1/projects/")]
    # The gateway's own project and credentials reach Vertex, not the agent's.
    assert sent and sent[-1].path == (
        "/v1/projects/e2e-project/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5:streamRawPredict"
    )
    assert sent[-1].json()["anthropic_version"] == "vertex-2023-10-16"
    assert KEY not in json.dumps(sent[-1].headers)


def test_claude_code_in_bedrock_mode_shows_the_gateways_refusals(
    stack: tuple[GatewayThread, CloudFakeThread], tmp_path: Path
) -> None:
    gateway, fake = stack
    fake.upstream.reset()
    env = {
        "CLAUDE_CODE_USE_BEDROCK": "1",
        "ANTHROPIC_BEDROCK_BASE_URL": gateway.base_url + "/bedrock",
        "AWS_REGION": "us-west-2",
        "AWS_BEARER_TOKEN_BEDROCK": KEY,
    }
    result = run_claude(env, "claude-opus-4-1", tmp_path)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["is_error"] is True
    assert "Model 'claude-opus-4-1' is not allowed for virtual key 'vk-cloud'" in out["result"]
    env["AWS_BEARER_TOKEN_BEDROCK"] = BROKE
    result = run_claude(env, "claude-sonnet-4-6", tmp_path)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    print(result.returncode, out.get("result"), out.get("api_error_status"))
    assert out["is_error"] is True and "Budget 'budget-cloud'" in out["result"]
    assert not [r for r in fake.requests if r.method == "POST"]
    refused = [r for r in gateway.request_log() if r["virtual_key_id"] == "vk-cloud-broke"]
    assert [r["status"] for r in refused].count(402) == 1  # shown once, not retried
    # After a failure in Bedrock mode Claude Code probes a dozen other Bedrock model ids; the
    # allowlist refuses them at the gateway, before any provider call.
    assert all(r["status"] == 403 for r in refused if r["status"] != 402)
