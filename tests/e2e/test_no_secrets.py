"""No provider key, virtual key secret or audit key ever appears in the process output, the
request log, the audit log or an audit export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.upstream import FakeUpstreamThread

SECRETS = {
    "SLUICE_TEST_VK": "sk-sluice-never-printed-0123456789",
    "SLUICE_TEST_PROVIDER": "sk-ant-provider-never-printed-0123456789",
    "SLUICE_TEST_AUDIT": "audit-key-never-printed-0123456789",
}


def post(base_url: str, key: str, model: str) -> int:
    body = json.dumps({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(
        base_url + "/v1/messages",
        data=body,
        method="POST",
        headers={"x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_secrets_stay_out_of_every_output(tmp_path: Path) -> None:
    os.environ.update(SECRETS)
    try:
        with FakeUpstreamThread() as upstream:
            config = {
                "providers": {
                    "anthropic": {
                        "base_url": upstream.base_url,
                        "keys": [{"name": "primary", "value": "env.SLUICE_TEST_PROVIDER"}],
                    }
                },
                "virtual_keys": [
                    {"id": "vk-s", "value": "env.SLUICE_TEST_VK", "provider_configs": [{"provider": "anthropic"}]}
                ],
                "audit": {"hmac_key": "env.SLUICE_TEST_AUDIT"},
            }
            with GatewayProcess(config, tmp_path) as gw:
                assert post(gw.base_url, SECRETS["SLUICE_TEST_VK"], "claude-haiku-4-5") == 200
                assert post(gw.base_url, SECRETS["SLUICE_TEST_VK"], "gpt-5") == 403
                assert post(gw.base_url, "sk-sluice-wrong", "claude-haiku-4-5") == 401
                # The provider rejects the gateway's key and echoes it back: the caller sees neither.
                upstream.upstream.fail_next(
                    401,
                    {
                        "type": "error",
                        "error": {
                            "type": "authentication_error",
                            "message": f"bad key {SECRETS['SLUICE_TEST_PROVIDER']}",
                        },
                    },
                )
                assert post(gw.base_url, SECRETS["SLUICE_TEST_VK"], "claude-haiku-4-5") == 502
            export = subprocess.run(
                [sys.executable, "-m", "sluice.cli.main", "audit", "export", "--config", str(gw.config_path)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        assert export.count("\n") >= 4
        outputs = {"process output": gw.output(), "audit export": export}
        for path in tmp_path.iterdir():
            if path.is_file() and path.name != "sluice.yaml":
                outputs[path.name] = path.read_bytes().decode("latin-1")
        for name, text in outputs.items():
            for secret in SECRETS.values():
                assert secret not in text, f"a secret leaked into {name}"
    finally:
        for name in SECRETS:
            os.environ.pop(name, None)
