"""The real Codex CLI and Gemini CLI (pinned in tests/e2e/package.json), set up by `sluice connect`,
under the kill switch and session caps, through a `sluice serve` process to the strict fakes.

- Stopped mid-session: the agent runs a tool loop; once its session is in the request log (as an
  operator would find it), `sluice stop session ID --key KEY` is run as its own process while the
  model's next answer is streaming. The CLI shows the surface's error with the stop's reason, the
  stream in flight ends with the in-stream error, and what it used is billed.
- Capped: a `session_caps` dollar cap on the key; the model calls a tool on every turn, and the
  session is refused with the surface's budget error once it is spent.

Gemini CLI sends no session id of its own: it runs here through the `gemini` shell function that
`sluice connect gemini-cli` prints, which names each run's session with `x-sluice-session`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import agent_cli, harness
from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.agent_loop import Step, scripted
from tests.fakes.upstream import FakeUpstreamThread

KEYS = {
    "vk-codex-stop": "sk-sluice-e2e-codex-stop-0000000",
    "vk-codex-cap": "sk-sluice-e2e-codex-cap-00000000",
    "vk-gemini-stop": "sk-sluice-e2e-gemini-stop-000000",
    "vk-gemini-cap": "sk-sluice-e2e-gemini-cap-0000000",
}
CODEX_MODEL, GEMINI_MODEL = "gpt-5.5", "gemini-2.5-flash"
# Long enough that the echoed answer streams for a while (the fake echoes up to 200 characters).
PROMPT = "please keep working: " + " ".join(f"w{i}" for i in range(60))


def config(upstream: FakeUpstreamThread) -> dict[str, Any]:
    return {
        "providers": {
            "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai-e2e"}]},
            "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-e2e"}]},
        },
        "virtual_keys": [
            {
                "id": key_id,
                "value": value,
                "provider_configs": [{"provider": "openai" if "codex" in key_id else "gemini"}],
            }
            for key_id, value in KEYS.items()
        ],
        # An audit key, so each stop is recorded with who and why.
        "audit": {"hmac_key": "e2e-audit-key-" + "0" * 32},
        # Codex's own model, not yet in the bundled price table.
        "pricing": {CODEX_MODEL: {"input_cost_per_mtok": 1.25, "output_cost_per_mtok": 10}},
        # Each Codex request reserves about $0.057 and costs about $0.012, each Gemini CLI one $0.015 and
        # $0.003: a few turns spend the cap.
        "session_caps": [
            {"id": "codex-session-cap", "virtual_key_id": "vk-codex-cap", "max_cost": 0.09},
            {"id": "gemini-session-cap", "virtual_key_id": "vk-gemini-cap", "max_cost": 0.02},
        ],
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeUpstreamThread]]:
    agent_cli.installed("codex")
    agent_cli.installed("gemini")
    with harness.gateway_with(config, tmp_path_factory.mktemp("cli-sessions")) as found:
        yield found


def _stop_mid_session(gateway: GatewayProcess, upstream: FakeUpstreamThread, key_id: str) -> harness.Ran:
    """What an operator does: find the session in the log once it has answered once, and stop it
    while the next answer streams."""

    def session() -> str | None:
        rows = harness.log_rows(gateway.db, key_id, 1, wait=0, status=200)
        streaming = len([r for r in upstream.requests if r.method == "POST"]) >= 2
        return str(rows[0]["session_id"]) if rows and rows[0]["session_id"] and streaming else None

    found = harness.wait_for(session, wait=120)
    assert found, "the session never reached its second request"
    return harness.sluice(gateway, "stop", "session", found, "--key", key_id, "--reason", "runaway spend")


def _stopped(gateway: GatewayProcess, key_id: str, stopped: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    assert "error" not in stopped, stopped
    ran: harness.Ran = stopped["result"]
    assert ran.code == 0 and ran.out.startswith("stopped: #"), ran.text
    rows = harness.log_rows(gateway.db, key_id, 2)
    [session] = {r["session_id"] for r in rows}
    return session, rows


def _check_stop_recorded(gateway: GatewayProcess, key_id: str, session: str, rows: list[dict[str, Any]]) -> None:
    first, cut = rows[0], rows[-1]
    assert first["status"] == 200 and first["cost_pico"] > 0
    # The answer in flight was cut with the in-stream error, logged with the error's status, and billed.
    assert cut["error_kind"] == "POLICY_STOPPED" and cut["status"] == 403 and cut["cost_pico"] > 0, cut
    assert all(r["error_kind"] == "POLICY_STOPPED" for r in rows[2:])  # nothing after it was served
    [stop] = [s for s in harness.stops(gateway.db) if s["key_id"] == key_id]
    assert (stop["scope"], stop["target"], stop["lifted_at"]) == ("session", session, None)
    assert stop["actor"].startswith("cli:") and stop["reason"] == "runaway spend"
    [record] = [a for a in harness.audit(gateway.db, "stop") if a["data"]["key_id"] == key_id]
    assert record["actor"] == stop["actor"] and record["data"]["reason"] == "runaway spend"
    assert record["data"]["target"] == session


def test_sluice_stop_session_stops_a_running_codex_session(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    upstream.upstream.event_delay = 0.5  # about 35 words of echo, one an event: ~17 s for the stop to land
    try:
        with (
            scripted(upstream.upstream, Step("exec_command", {"cmd": "true"})),
            harness.meanwhile(lambda: _stop_mid_session(gateway, upstream, "vk-codex-stop")) as stopped,
        ):
            ran = harness.codex(gateway, tmp_path, KEYS["vk-codex-stop"], CODEX_MODEL, PROMPT)
    finally:
        upstream.upstream.event_delay = 0.0
    session, rows = _stopped(gateway, "vk-codex-stop", stopped)
    assert ran.code == 1, ran.text
    assert f"Sluice stopped this session ({session}): runaway spend" in ran.err, ran.text
    _check_stop_recorded(gateway, "vk-codex-stop", session, rows)


def test_sluice_stop_session_stops_a_running_gemini_cli_session(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    upstream.upstream.event_delay = 1.0  # about 35 words of echo, two an event: ~17 s for the stop to land
    work = tmp_path / "work"
    step = Step("write_file", {"file_path": str(work / "notes.txt"), "content": "x\n"})
    try:
        with (
            scripted(upstream.upstream, step),
            harness.meanwhile(lambda: _stop_mid_session(gateway, upstream, "vk-gemini-stop")) as stopped,
        ):
            ran = harness.gemini(
                gateway, tmp_path, KEYS["vk-gemini-stop"], GEMINI_MODEL, PROMPT, "--approval-mode", "yolo"
            )
    finally:
        upstream.upstream.event_delay = 0.0
    session, rows = _stopped(gateway, "vk-gemini-stop", stopped)
    assert len(session) == 32  # the shell function's x-sluice-session (16 random bytes in hex)
    assert ran.code != 0, ran.text
    assert f"Sluice stopped this session ({session}): runaway spend" in ran.text, ran.text
    _check_stop_recorded(gateway, "vk-gemini-stop", session, rows)


def _check_capped(gateway: GatewayProcess, key_id: str, cap: str, status: int) -> list[dict[str, Any]]:
    rows = harness.log_rows(gateway.db, key_id, 2)
    assert len({r["session_id"] for r in rows}) == 1 and rows[0]["session_id"]  # one session, cut
    assert [r["status"] for r in rows].count(200) >= 1, rows  # it ran before the cap was spent
    last = rows[-1]
    assert last["status"] == status and last["error_kind"] == "POLICY_BUDGET_EXCEEDED", last
    assert last["reason"].startswith(f"Budget '{cap}' (session {rows[0]['session_id']}) is exhausted"), last
    return rows


def test_a_session_cap_stops_a_codex_session_with_the_budget_error(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    with scripted(upstream.upstream, Step("exec_command", {"cmd": "true"}, always=True)):
        ran = harness.codex(gateway, tmp_path, KEYS["vk-codex-cap"], CODEX_MODEL, "run the tests until they pass")
    assert ran.code == 1, ran.text
    # The Responses surface's budget error is OpenAI's 429 `insufficient_quota`, on which Codex stops
    # for good (any other code it retries), showing its own wording for it.
    assert "ERROR: Quota exceeded. Check your plan and billing details." in ran.err, ran.text
    _check_capped(gateway, "vk-codex-cap", "codex-session-cap", 429)


def test_a_session_cap_stops_a_gemini_cli_session_with_the_budget_error(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    work = tmp_path / "work"
    step = Step("write_file", {"file_path": str(work / "notes.txt"), "content": "x\n"}, always=True)
    with scripted(upstream.upstream, step):
        ran = harness.gemini(
            gateway, tmp_path, KEYS["vk-gemini-cap"], GEMINI_MODEL, "run the tests", "--approval-mode", "yolo"
        )
    assert ran.code != 0, ran.text
    assert "Budget 'gemini-session-cap' (session " in ran.text, ran.text
    assert '"code":402' in ran.err and '"status":"RESOURCE_EXHAUSTED"' in ran.err, ran.text
    _check_capped(gateway, "vk-gemini-cap", "gemini-session-cap", 402)
