"""`sluice connect claude-code --signin`: the settings that open Claude Code's /login on the gateway's
sign-in, with no key anywhere (docs/design/claude-gateway-protocol.md, "Pointing the client")."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from sluice.cli.main import app

runner = CliRunner()


def test_signin_writes_the_login_pins_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"env": {"ANTHROPIC_AUTH_TOKEN": "sk-old"}, "model": "opus"}))
    argv = ["connect", "claude-code", "--url", "https://sluice.example.com/v1/", "--signin"]
    result = runner.invoke(app, [*argv, "--home", str(tmp_path), "--write"], env={"SLUICE_API_KEY": ""})
    assert result.exit_code == 0, result.output
    data = json.loads(path.read_text())
    assert data["forceLoginMethod"] == "gateway" and data["forceLoginGatewayUrl"] == "https://sluice.example.com"
    assert data["model"] == "opus"
    assert "/login" in result.output


def test_signin_as_a_managed_settings_file_for_device_management(tmp_path: Path) -> None:
    managed = tmp_path / "managed-settings.json"
    argv = ["connect", "claude-code", "--url", "https://sluice.example.com", "--signin", "--managed-file"]
    result = runner.invoke(app, [*argv, str(managed), "--home", str(tmp_path), "--write"])
    assert result.exit_code == 0, result.output
    assert json.loads(managed.read_text()) == {
        "forceLoginMethod": "gateway",
        "forceLoginGatewayUrl": "https://sluice.example.com",
    }
    assert not (tmp_path / ".claude").exists()  # the user's own settings are not touched


def test_signin_is_claude_codes_and_a_key_is_needed_otherwise(tmp_path: Path) -> None:
    codex = runner.invoke(app, ["connect", "codex", "--url", "https://s.example", "--signin", "--home", str(tmp_path)])
    assert codex.exit_code == 2 and "--signin is for claude-code" in codex.output
    bare = runner.invoke(app, ["connect", "codex", "--url", "https://s.example"], env={"SLUICE_API_KEY": ""})
    assert bare.exit_code == 2 and "--key" in bare.output
