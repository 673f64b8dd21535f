"""The real Claude Code, Codex and Gemini CLIs through one gateway: each run is grouped into one
agent session in the ledger, with where it worked, and Claude Code's subagent requests land in
their parent's session.

- Claude Code: the model (the scripted fake) starts a subagent through the `Agent` tool; the
  subagent's own requests carry the parent's `X-Claude-Code-Session-Id`.
- Codex: a tool loop (two requests with one `session-id`), started the way `sluice connect`
  sets it up (its env_http_headers carry the repository, branch and directory).
- Gemini CLI sends no session id: two runs through the shell function `sluice connect` prints
  are two sessions (an `x-sluice-session` each), each with all its requests.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.cli.connect import SHELL_NOTE
from tests.e2e import agent_cli
from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.agent_loop import Step, scripted
from tests.fakes.upstream import FakeUpstreamThread

KEY = "sk-sluice-e2e-sessions-000000000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeUpstreamThread]]:
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-sessions"}]},
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai-s"}]},
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-sessions"}]},
            },
            "virtual_keys": [
                {
                    "id": "vk-sessions",
                    "value": KEY,
                    "provider_configs": [{"provider": "anthropic"}, {"provider": "openai"}, {"provider": "gemini"}],
                }
            ],
        }
        with GatewayProcess(config, tmp_path_factory.mktemp("sessions-gw")) as gateway:
            yield gateway, upstream


def ledger(db: Path, requests: int, wait: float = 10.0) -> dict[str, dict[str, Any]]:
    """The ledger's sessions by session id, once they hold `requests` requests in all."""
    deadline = time.monotonic() + wait
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            found = {r["session_id"]: dict(r) for r in conn.execute("select * from agent_session")}
            items = list(conn.execute("select * from agent_session_item"))
        if sum(s["requests"] for s in found.values()) >= requests or time.monotonic() > deadline:
            for s in found.values():
                s["items"] = {(i["kind"], i["name"]): i["count"] for i in items if i["session"] == s["id"]}
            return found
        time.sleep(0.1)


def posts_since(upstream: FakeUpstreamThread, start: int) -> list[Any]:
    return [r for r in upstream.requests[start:] if r.method == "POST"]


def test_claude_code_subagent_requests_are_in_the_parent_session(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    before = ledger(gateway.db, 0, wait=0)
    before_rows = len(agent_cli.log_rows(gateway.db, "vk-sessions", 0, wait=0))
    env = {
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_AUTH_TOKEN": KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP": "1",
        # What the shell function of `sluice connect claude-code` sets.
        "ANTHROPIC_CUSTOM_HEADERS": "x-sluice-repo: acme/api\nx-sluice-branch: fix-login\nx-sluice-cwd: /src/api",
    }
    step = Step("Agent", {"description": "look around", "prompt": "say hello", "subagent_type": "general-purpose"})
    argv = [str(agent_cli.installed("claude")), "-p", "ask a subagent to say hello", "--model", "claude-sonnet-4-6"]
    with scripted(upstream.upstream, step):
        result = agent_cli.run([*argv, "--output-format", "json"], tmp_path, env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    posts = [r for r in upstream.requests if r.method == "POST"]
    bodies = [p.json() for p in posts]
    # The main loop's first request (it may start a subagent), the subagent's, then the main loop's with the result.
    assert any("Agent" not in {t.get("name") for t in b.get("tools", [])} for b in bodies), "no subagent request"
    # Every request, the subagent's too, names one session (the gateway logs X-Claude-Code-Session-Id).
    rows = agent_cli.log_rows(gateway.db, "vk-sessions", before_rows + len(posts))[before_rows:]
    sessions = {r["session_id"] for r in rows}
    assert len(rows) == len(posts) and len(sessions) == 1 and None not in sessions, sessions
    [session] = sessions
    assert {json.loads(b["metadata"]["user_id"])["session_id"] for b in bodies} == {session}
    found = ledger(gateway.db, sum(s["requests"] for s in before.values()) + len(posts))
    row = found[session]
    assert row["requests"] == len(posts) >= 3 and row["errors"] == 0
    assert (row["repo"], row["branch"], row["cwd"]) == ("acme/api", "fix-login", "/src/api")
    assert row["client"] == "claude-cli" and row["client_version"]
    assert row["cost_pico"] > 0 and row["items"][("model", "claude-sonnet-4-6")] == len(posts)


def test_codex_tool_loop_is_one_session_with_its_workspace(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    upstream.upstream.tail_delay = 0.5
    before = ledger(gateway.db, 0, wait=0)
    before_rows = len(agent_cli.log_rows(gateway.db, "vk-sessions", 0, wait=0))
    agent_cli.connect("codex", gateway.base_url, KEY, tmp_path, "--model", "gpt-5.5")
    argv = [
        str(agent_cli.installed("codex")),
        "exec",
        "--skip-git-repo-check",
        "--dangerously-bypass-approvals-and-sandbox",
    ]
    argv += ["-c", "model_providers.sluice.request_max_retries=0", "-c", "model_providers.sluice.stream_max_retries=0"]
    env = {"SLUICE_API_KEY": KEY, "SLUICE_REPO": "acme/cli", "SLUICE_BRANCH": "main", "SLUICE_CWD": "/src/cli"}
    with scripted(upstream.upstream, Step("exec_command", {"cmd": "echo hi > loop.txt"})):
        result = agent_cli.run([*argv, "write loop.txt"], tmp_path, env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    posts = [r for r in upstream.requests if r.method == "POST"]
    assert len(posts) >= 2
    rows = agent_cli.log_rows(gateway.db, "vk-sessions", before_rows + len(posts))[before_rows:]
    sessions = {r["session_id"] for r in rows}
    assert len(rows) == len(posts) and len(sessions) == 1 and None not in sessions, sessions
    [session] = sessions
    found = ledger(gateway.db, sum(s["requests"] for s in before.values()) + len(posts))
    row = found[session]
    assert row["requests"] == len(posts)
    assert (row["repo"], row["branch"], row["cwd"]) == ("acme/cli", "main", "/src/cli")
    assert row["client"] == "codex_exec"


def test_gemini_cli_runs_are_sessions_named_by_the_connect_shell_function(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    before = ledger(gateway.db, 0, wait=0)
    out = agent_cli.connect("gemini-cli", gateway.base_url, KEY, tmp_path, "--model", "gemini-2.5-flash")
    lines = out.splitlines()
    exports = [line for line in lines if line.startswith("export ")]
    functions = lines[lines.index(SHELL_NOTE) + 1 :]
    functions = functions[: next(i for i, f in enumerate(functions) if f.startswith("gemini()")) + 1]
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run(["git", "-C", str(work), "init", "-q", "-b", "feature/x"], check=True)
    subprocess.run(["git", "-C", str(work), "remote", "add", "origin", "git@github.com:acme/gem.git"], check=True)
    script = "\n".join(
        [*exports, *functions, f"cd {work}", "gemini --approval-mode yolo -p 'write loop.txt' </dev/null"]
    )
    env = {
        "PATH": f"{agent_cli.NODE_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "TERM": "dumb",
        "TMPDIR": str(tmp_path),
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
    }
    counts = []
    for _ in range(2):
        start = len(upstream.requests)
        with scripted(upstream.upstream, Step("write_file", {"file_path": str(work / "loop.txt"), "content": "x\n"})):
            ran = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        counts.append(len(posts_since(upstream, start)))
    assert all(n >= 2 for n in counts), counts
    found = ledger(gateway.db, sum(s["requests"] for s in before.values()) + sum(counts))
    new = [s for sid, s in found.items() if sid not in before and s["client"] and s["client"].startswith("GeminiCLI")]
    assert sorted(s["requests"] for s in new) == sorted(counts)
    assert {(s["repo"], s["branch"], s["cwd"]) for s in new} == {("github.com:acme/gem", "feature/x", str(work))}
