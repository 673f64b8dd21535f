"""The real Claude Code CLI under session caps, runaway detection and the kill switch, through the
gateway to the strict fake Anthropic API, with a scripted model that keeps calling Bash."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent_cli import installed, run
from tests.fakes.upstream import FakeUpstream, FakeUpstreamThread
from tests.support import GatewayThread

CAPPED = "sk-sluice-e2e-capped-000000000000"
LOOPING = "sk-sluice-e2e-looping-00000000000"
STOPPED = "sk-sluice-e2e-stopped-00000000000"
MODEL = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    installed("claude")
    with FakeUpstreamThread() as upstream:
        keys = [("vk-capped", CAPPED), ("vk-looping", LOOPING), ("vk-stopped", STOPPED)]
        config = {
            "providers": {"anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-e2e"}]}},
            "virtual_keys": [{"id": i, "value": v, "provider_configs": [{"provider": "anthropic"}]} for i, v in keys],
            # Each Claude Code request reserves about $0.60 (32,000 max_tokens of Sonnet) and costs a few
            # cents: a session of a handful of turns spends the cap.
            "session_caps": [{"id": "cap-per-session", "virtual_key_id": "vk-capped", "max_cost": 0.75}],
            "runaway": [{"id": "bash-loop", "virtual_key_id": "vk-looping", "tool_loop_repeats": 3, "action": "pause"}],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("cc-sessions")) as gateway:
            yield gateway, upstream


def _always_bash(upstream: FakeUpstream, command: str) -> Any:
    """The model calls Bash with the same command on every turn that offers it (a runaway agent)."""
    build = upstream.anthropic_reply

    def reply(doc: Any, body: bytes, model: str) -> Any:
        names = {t.get("name") for t in doc.get("tools") or () if isinstance(t, dict)}
        if "Bash" not in names:
            return build(doc, body, model)
        made = build({**doc, "tool_choice": {"type": "tool", "name": "Bash"}}, body, model)
        args = {"command": command, "description": "Run the tests"}
        return dataclasses.replace(made, tool=dataclasses.replace(made.tool, input=args))

    upstream.anthropic_reply = reply  # type: ignore[method-assign]
    return build


def _claude(gateway: GatewayThread, key: str, home: Path, prompt: str) -> dict[str, Any]:
    env = {
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_AUTH_TOKEN": key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP": "1",
    }
    argv = [str(installed("claude")), "-p", prompt, "--model", MODEL, "--output-format", "json"]
    result: subprocess.CompletedProcess[str] = run([*argv, "--allowedTools", "Bash"], home, env, timeout=240)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_a_session_cap_stops_a_running_claude_code_session_with_its_message(
    stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    build = _always_bash(upstream.upstream, "true")
    try:
        out = _claude(gateway, CAPPED, tmp_path, "run the tests until they pass")
    finally:
        upstream.upstream.anthropic_reply = build  # type: ignore[method-assign]
    assert out["is_error"] is True, out
    assert "402" in out["result"] and "Budget 'cap-per-session' (session " in out["result"], out["result"]
    rows = sorted((r for r in gateway.request_log() if r["virtual_key_id"] == "vk-capped"), key=lambda r: r["ts"])
    assert [r["status"] for r in rows].count(200) >= 2  # it ran a few turns first
    assert rows[-1]["status"] == 402 and rows[-1]["error_kind"] == "POLICY_BUDGET_EXCEEDED"
    assert len({r["session_id"] for r in rows}) == 1  # one session, cut


def test_a_failing_bash_loop_is_detected_and_pauses_the_session(
    stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    build = _always_bash(upstream.upstream, "exit 3")
    try:
        out = _claude(gateway, LOOPING, tmp_path, "fix the failing test")
    finally:
        upstream.upstream.anthropic_reply = build  # type: ignore[method-assign]
    assert out["is_error"] is True, out
    assert "Sluice paused this session" in out["result"] and "tool 'Bash' failed 3 times" in out["result"], out
    rows = sorted((r for r in gateway.request_log() if r["virtual_key_id"] == "vk-looping"), key=lambda r: r["ts"])
    assert rows[-1]["status"] == 403 and rows[-1]["error_kind"] == "POLICY_STOPPED"
    [stop] = [s for s in gateway.call(gateway.services.store.list_stops()) if s.key_id == "vk-looping"]
    assert stop.actor == "runaway:bash-loop" and stop.target == rows[-1]["session_id"]


def test_the_kill_switch_stops_claude_codes_running_stream(
    stack: tuple[GatewayThread, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    upstream.upstream.event_delay = 0.2  # a long answer, streamed slowly
    stopped = threading.Event()

    def stop_when_streaming() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(r.method == "POST" and b'"tools"' in r.body for r in list(upstream.upstream.requests)):
                gateway.call(gateway.services.stops.throw("key", "vk-stopped", "agent out of control", "admin:e2e"))
                stopped.set()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=stop_when_streaming, daemon=True)
    watcher.start()
    try:
        out = _claude(gateway, STOPPED, tmp_path, " ".join(f"word{i}" for i in range(300)))
    finally:
        upstream.upstream.event_delay = 0.0
        watcher.join(timeout=5)
    assert stopped.is_set()
    assert out["is_error"] is True, out
    assert "Sluice stopped this key (vk-stopped): agent out of control" in out["result"], out
    rows = [r for r in gateway.request_log() if r["virtual_key_id"] == "vk-stopped"]
    # The answer in flight was cut with the in-stream error (logged with the error's status) and billed.
    cut = [r for r in rows if r["cost_pico"] > 0]
    assert len(cut) == 1 and cut[0]["error_kind"] == "POLICY_STOPPED" and cut[0]["status"] == 403, rows
    assert all(r["error_kind"] == "POLICY_STOPPED" for r in rows)  # and nothing after it was served
