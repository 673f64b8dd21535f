"""`sluice connect`: each client's settings merged into its own file, keeping the user's other settings."""

from __future__ import annotations

import json
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sluice.cli.connect import SHELL_NOTE
from sluice.cli.main import app

runner = CliRunner()
URL = "https://sluice.example.com/"
KEY = "sk-sluice-unit-0123456789"


def connect(home: Path, client: str, *extra: str) -> str:
    result = runner.invoke(app, ["connect", client, "--url", URL, "--key", KEY, "--home", str(home), *extra])
    assert result.exit_code == 0, result.output
    return result.output


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".sluice-*.bak"))


def test_claude_code_merges_the_env_block_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    original = {"permissions": {"allow": ["Bash(ls:*)"]}, "env": {"DEBUG": "1"}, "model": "opus"}
    path.write_text(json.dumps(original))
    out = connect(tmp_path, "claude-code", "--write", "--model", "claude-sonnet-4-6")
    assert f"Updated {path} (previous version kept as {path}.sluice-" in out
    data = json.loads(path.read_text())
    assert data["permissions"] == original["permissions"] and data["model"] == "opus"
    assert data["env"] == {
        "DEBUG": "1",
        "ANTHROPIC_BASE_URL": "https://sluice.example.com",
        "ANTHROPIC_AUTH_TOKEN": KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "ANTHROPIC_MODEL": "claude-sonnet-4-6",
    }
    [backup] = backups(path)
    assert json.loads(backup.read_text()) == original
    # The file now holds the key: only its owner may read it, and the same for the backup.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(backup.stat().st_mode) == 0o600


def test_a_second_write_changes_nothing_and_makes_no_backup(tmp_path: Path) -> None:
    for client in ("claude-code", "codex", "gemini-cli", "opencode"):
        connect(tmp_path, client, "--write", "--model", "m1")
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and ".sluice-" not in p.name}
    assert len(files) == 4
    for client in ("claude-code", "codex", "gemini-cli", "opencode"):
        assert "nothing changed" in connect(tmp_path, client, "--write", "--model", "m1")
    assert {p: p.read_bytes() for p in files} == files
    assert not list(tmp_path.rglob("*.bak"))  # the first writes created the files: nothing to back up


def test_codex_config_keeps_comments_tables_and_the_users_model(tmp_path: Path) -> None:
    path = tmp_path / ".codex" / "config.toml"
    path.parent.mkdir()
    original = (
        "# my settings\n"
        'model = "gpt-5.5"  # the one I like\n'
        'approval_policy = "on-request"\n\n'
        "[mcp_servers.docs]\n"
        'command = "npx"\n\n'
        "[analytics]\n"
        "enabled = true\n"
    )
    path.write_text(original)
    out = connect(tmp_path, "codex", "--write")
    assert f"export SLUICE_API_KEY={KEY}" in out
    text = path.read_text()
    assert "# my settings" in text and "# the one I like" in text
    config = tomllib.loads(text)
    assert config["model"] == "gpt-5.5" and config["approval_policy"] == "on-request"
    assert config["mcp_servers"] == {"docs": {"command": "npx"}}
    assert config["model_provider"] == "sluice"
    assert config["model_providers"]["sluice"] == {
        "name": "Sluice",
        "base_url": "https://sluice.example.com/v1",
        "env_key": "SLUICE_API_KEY",
        "wire_api": "responses",
        "env_http_headers": {
            "x-sluice-repo": "SLUICE_REPO",
            "x-sluice-branch": "SLUICE_BRANCH",
            "x-sluice-cwd": "SLUICE_CWD",
        },
    }
    assert config["analytics"] == {"enabled": False} and config["feedback"] == {"enabled": False}
    assert KEY not in text  # Codex reads the key from the environment
    [backup] = backups(path)
    assert backup.read_text() == original


def test_gemini_cli_settings_and_environment(tmp_path: Path) -> None:
    path = tmp_path / ".gemini" / "settings.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"ui": {"theme": "GitHub"}, "security": {"folderTrust": {"enabled": True}}}))
    out = connect(tmp_path, "gemini-cli", "--write", "--url", "https://sluice.example.com/v1")
    assert "export GOOGLE_GEMINI_BASE_URL=https://sluice.example.com\n" in out
    assert f"export GEMINI_API_KEY={KEY}" in out
    data = json.loads(path.read_text())
    assert data == {
        "ui": {"theme": "GitHub"},
        "security": {"folderTrust": {"enabled": True}, "auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }
    assert len(backups(path)) == 1


def test_opencode_provider_entry_accumulates_models(tmp_path: Path) -> None:
    path = tmp_path / ".config" / "opencode" / "opencode.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"theme": "dark", "provider": {"ollama": {"npm": "x"}}}))
    connect(tmp_path, "opencode", "--write", "--model", "claude-sonnet-4-6")
    connect(tmp_path, "opencode", "--write", "--model", "gpt-5.5")
    data = json.loads(path.read_text())
    assert data["theme"] == "dark" and data["provider"]["ollama"] == {"npm": "x"}
    sluice = data["provider"]["sluice"]
    assert sluice["npm"] == "@ai-sdk/openai-compatible"
    assert sluice["options"] == {"baseURL": "https://sluice.example.com/v1", "apiKey": "{env:SLUICE_API_KEY}"}
    assert set(sluice["models"]) == {"claude-sonnet-4-6", "gpt-5.5"}
    assert data["model"] == "sluice/gpt-5.5" and data["share"] == "disabled"
    assert len(backups(path)) == 2


def test_opencode_needs_a_model() -> None:
    result = runner.invoke(app, ["connect", "opencode", "--url", URL, "--key", KEY])
    assert result.exit_code == 2 and "--model" in result.output


def test_cursor_prints_the_ui_steps_and_writes_nothing(tmp_path: Path) -> None:
    out = connect(tmp_path, "cursor", "--write", "--model", "gpt-5.5")
    assert "Override OpenAI Base URL" in out and "https://sluice.example.com/v1" in out and KEY in out
    assert "Nothing written." in out
    assert not any(tmp_path.iterdir())


def test_without_write_nothing_is_touched(tmp_path: Path) -> None:
    out = connect(tmp_path, "codex", "--model", "gpt-5.5")
    assert "[model_providers.sluice]" in out and 'model = "gpt-5.5"' in out
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_broken_settings_file_is_left_alone(tmp_path: Path, content: str) -> None:
    path = tmp_path / ".gemini" / "settings.json"
    path.parent.mkdir()
    path.write_text(content)
    result = runner.invoke(
        app, ["connect", "gemini-cli", "--url", URL, "--key", KEY, "--home", str(tmp_path), "--write"]
    )
    assert result.exit_code == 2 and "settings.json" in result.output
    assert path.read_text() == content and not backups(path)


def test_unknown_client() -> None:
    result = runner.invoke(app, ["connect", "vim", "--url", URL, "--key", KEY])
    assert result.exit_code == 2 and "claude-code, codex" in result.output


@pytest.mark.parametrize("client", ["claude-code", "codex", "gemini-cli"])
def test_the_shell_functions_start_the_agent_with_the_workspace_headers(tmp_path: Path, client: str) -> None:
    """Runs the printed shell lines in bash, in a git repository whose remote URL holds a token,
    with a stand-in for the agent that prints what it was started with."""
    out = connect(tmp_path, client)
    lines = out.splitlines()
    shell = lines[lines.index(SHELL_NOTE) + 1 :]
    shell = shell[: next(i for i, line in enumerate(shell) if line.startswith(("claude()", "codex()", "gemini()"))) + 1]
    binary = {"claude-code": "claude", "codex": "codex", "gemini-cli": "gemini"}[client]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    agent = bin_dir / binary
    shown = "SLUICE_REPO SLUICE_BRANCH SLUICE_CWD ANTHROPIC_CUSTOM_HEADERS GEMINI_CLI_CUSTOM_HEADERS"
    agent.write_text(
        f'#!/bin/bash\nfor v in {shown}; do [ -n "${{!v}}" ] && printf "%s=%s\\n" $v "${{!v}}"; done\necho args="$*"\n'
    )
    agent.chmod(0o755)
    repo = tmp_path / "work" / "api"
    repo.mkdir(parents=True)
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "fix/login"], check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://alice:ghp_secret@github.com/acme/api.git"], check=True)
    script = "\n".join([*shell, f"cd {repo}", f'{binary} -p "say hi"'])
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True)
    assert "ghp_secret" not in ran.stdout and "alice" not in ran.stdout
    assert "args=-p say hi" in ran.stdout
    if client == "codex":  # Codex turns the variables into headers itself (env_http_headers)
        assert "SLUICE_REPO=github.com/acme/api\n" in ran.stdout and "SLUICE_BRANCH=fix/login\n" in ran.stdout
        assert f"SLUICE_CWD={repo}\n" in ran.stdout
    elif client == "claude-code":
        headers = ran.stdout.split("ANTHROPIC_CUSTOM_HEADERS=", 1)[1]
        assert headers.startswith(
            f"x-sluice-repo: github.com/acme/api\nx-sluice-branch: fix/login\nx-sluice-cwd: {repo}\n"
        )
    else:
        [line] = [x for x in ran.stdout.splitlines() if x.startswith("GEMINI_CLI_CUSTOM_HEADERS=")]
        parts = line.removeprefix("GEMINI_CLI_CUSTOM_HEADERS=").split(",")
        assert parts[0].startswith("x-sluice-session: ") and len(parts[0].split(": ")[1]) == 32
        assert parts[1:] == [
            "x-sluice-repo: github.com/acme/api",
            "x-sluice-branch: fix/login",
            f"x-sluice-cwd: {repo}",
        ]
    # The user's shell keeps nothing: the function ran in a subshell.
    after = subprocess.run(
        ["bash", "-c", script + "\necho repo=[$SLUICE_REPO]"], capture_output=True, text=True, env=env
    )
    assert after.stdout.rstrip().endswith("repo=[]")


def test_codex_telemetry_points_its_exporters_at_the_gateway(tmp_path: Path) -> None:
    out = connect(tmp_path, "codex", "--write", "--telemetry")
    path = tmp_path / ".codex" / "config.toml"
    otel = tomllib.loads(path.read_text())["otel"]
    bearer = {"authorization": f"Bearer {KEY}"}  # Codex does not expand ${VAR} in these headers
    assert otel["exporter"] == {
        "otlp-http": {"endpoint": "https://sluice.example.com/v1/logs", "protocol": "binary", "headers": bearer}
    }
    assert otel["metrics_exporter"]["otlp-http"]["endpoint"] == "https://sluice.example.com/v1/metrics"
    assert "trace_exporter" not in otel
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "config.toml now holds the key" in out


def test_gemini_cli_telemetry_settings_and_the_exporters_environment(tmp_path: Path) -> None:
    out = connect(tmp_path, "gemini-cli", "--write", "--telemetry")
    settings = json.loads((tmp_path / ".gemini" / "settings.json").read_text())
    assert settings["telemetry"] == {
        "enabled": True,
        "target": "local",
        "otlpEndpoint": "https://sluice.example.com",
        "otlpProtocol": "http",
        "logPrompts": False,
    }
    assert f"export OTEL_EXPORTER_OTLP_HEADERS='authorization=Bearer {KEY}'" in out
    assert "export OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta" in out


@pytest.mark.parametrize("client", ["claude-code", "cursor", "opencode"])
def test_telemetry_is_for_codex_and_gemini_cli(tmp_path: Path, client: str) -> None:
    result = runner.invoke(
        app, ["connect", client, "--url", URL, "--key", KEY, "--home", str(tmp_path), "--model", "m", "--telemetry"]
    )
    assert result.exit_code == 2 and "--telemetry is for codex and gemini-cli" in result.output
