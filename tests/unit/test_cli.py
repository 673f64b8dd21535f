from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from sluice.cli.main import app

runner = CliRunner()


def test_config_validate_ok_and_error(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("virtual_keys:\n  - id: vk-a\n    provider_configs: [{provider: bedrock}]\n")
    result = runner.invoke(app, ["config", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "ok: 0 provider(s), 1 virtual key(s)" in result.output
    assert "'bedrock' is not configured" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("virtual_keyz: []\n")
    result = runner.invoke(app, ["config", "validate", str(bad)])
    assert result.exit_code == 2
    assert "virtual_keyz: unknown key" in result.output


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'keys.db'}"
    created = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--id",
            "vk-alice",
            "--name",
            "Alice",
            "--team",
            "team-a",
            "--allow",
            "anthropic=claude-sonnet-4-6,claude-haiku-4-5",
            "--allow",
            "fake",
            "--store",
            store,
        ],
    )
    assert created.exit_code == 0, created.output
    secret = re.search(r"secret \(shown once, store it now\): (\S+)", created.output)
    assert secret is not None and secret.group(1).startswith("sk-sluice-")
    listed = runner.invoke(app, ["keys", "list", "--store", store])
    assert listed.exit_code == 0
    assert "vk-alice" in listed.output and "active" in listed.output
    assert "anthropic:claude-sonnet-4-6,claude-haiku-4-5; fake:*" in listed.output
    assert secret.group(1) not in listed.output  # only a hint is ever shown again
    again = runner.invoke(app, ["keys", "create", "--id", "vk-alice", "--allow", "fake", "--store", store])
    assert again.exit_code != 0
    revoked = runner.invoke(app, ["keys", "revoke", "vk-alice", "--store", store])
    assert revoked.exit_code == 0
    assert "revoked" in runner.invoke(app, ["keys", "list", "--store", store]).output
    assert runner.invoke(app, ["keys", "revoke", "vk-alice", "--store", store]).exit_code == 1


def test_config_validate_warns_of_unpriced_models_under_a_budget(tmp_path: Path) -> None:
    config = {
        "virtual_keys": [
            {
                "id": "vk-a",
                "value": "sk-sluice-validate-00000000000000",
                "team_id": "t",
                "provider_configs": [{"provider": "fake", "allowed_models": ["echo", "claude-opus-5-5"]}],
            }
        ],
        "teams": [{"id": "t"}],
        "budgets": [{"id": "b", "team_id": "t", "max_limit": 5, "reset_duration": "1d"}],
    }
    path = tmp_path / "sluice.json"
    path.write_text(json.dumps(config))
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0
    assert "fake/echo, which has no price" in result.output and "claude-opus-5-5" not in result.output
    config["pricing"] = {"unpriced": "allow"}
    path.write_text(json.dumps(config))
    assert "no price" not in runner.invoke(app, ["config", "validate", str(path)]).output
