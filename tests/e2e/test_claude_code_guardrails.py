"""The real Claude Code CLI through Sluice with guardrails on (the default set), against the strict fake:
the prompt carries a `.env` with an AWS key pair, the fake model copies what it was given into a Write
tool call (it only ever sees placeholders), and Claude Code's file write produces the real values on
disk. The provider never receives the secrets, and the audit log records the redactions."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import agent_cli
from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.upstream import FakeUpstreamThread

KEY = "sk-sluice-e2e-guardrails-00000000"
AKID = "AKIAQWERTYUIOPASDFGH"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8sXkL2Ab"
ENV = f"AWS_ACCESS_KEY_ID={AKID}\nAWS_SECRET_ACCESS_KEY={SECRET}\nREGION=eu-west-1\n"
START, END = "<<<ENV", "ENV>>>"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeUpstreamThread]]:
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-guard"}]}
            },
            "virtual_keys": [{"id": "vk-guard", "value": KEY, "provider_configs": [{"provider": "anthropic"}]}],
            "audit": {"hmac_key": "e2e-guardrails-audit-key-0123456789"},
            "guardrails": {},  # the section on its own: the standard set (secrets redacted)
        }
        with GatewayProcess(config, tmp_path_factory.mktemp("guard-gw")) as gateway:
            yield gateway, upstream


def _copying_model(upstream: FakeUpstreamThread, target: Path) -> Any:
    """The fake answers the first turn with Write(target, <what the user gave between the markers>), as a
    model that copies its context would; the reply builder and the strict rules are the fake's own."""
    plain = upstream.upstream.anthropic_reply

    def reply(doc: Any, body: bytes, model: str) -> Any:
        text = body.decode()
        tools = {t.get("name") for t in doc.get("tools") or ()}
        if "Write" not in tools or '"tool_result"' in text or START not in text:
            return plain(doc, body, model)
        forced = plain(dict(doc) | {"tool_choice": {"type": "tool", "name": "Write"}}, body, model)
        given = json.loads(body)["messages"][0]["content"]
        given = given if isinstance(given, str) else "".join(b.get("text", "") for b in given)
        copied = given.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"
        tool = dataclasses.replace(forced.tool, input={"file_path": str(target), "content": copied})
        return dataclasses.replace(forced, tool=tool)

    return reply


def test_claude_code_writes_the_real_secret_the_provider_never_saw(
    stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    work = tmp_path / "work"
    work.mkdir()
    target = work / "backup.env"
    prompt = f"Here is my .env file:\n{START}\n{ENV}{END}\nWrite it to backup.env"
    env = {
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_AUTH_TOKEN": KEY,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    argv = [str(agent_cli.installed("claude")), "-p", prompt, "--model", "claude-sonnet-4-6", "--output-format", "json"]
    original = upstream.upstream.anthropic_reply
    upstream.upstream.anthropic_reply = _copying_model(upstream, target)  # type: ignore[method-assign]
    try:
        result = agent_cli.run([*argv, "--permission-mode", "acceptEdits"], tmp_path, env, timeout=120)
    finally:
        upstream.upstream.anthropic_reply = original  # type: ignore[method-assign]
    assert result.returncode == 0, result.stdout + result.stderr
    # The file on disk has the real values ...
    assert target.read_text() == ENV
    # ... that no request to the provider carried (placeholders went instead).
    posts = [r for r in upstream.requests if r.method == "POST"]
    assert len(posts) >= 2
    assert all(AKID.encode() not in r.body and SECRET.encode() not in r.body for r in posts)
    assert any(b"[sluice:aws_secret_key:" in r.body for r in posts)
    # The audit log records the redactions: rule, kind, length and a keyed hash, never the value.
    rows = agent_cli.log_rows(gateway.db, "vk-guard", len(posts))
    assert sum(r["guardrails"] for r in rows) >= 2
    with sqlite3.connect(gateway.db) as conn:
        events = [json.loads(d) for (d,) in conn.execute("select data from audit_log where kind = 'guardrail'")]
    kinds = {(e["rule"], e["action"], e["kind"]) for e in events}
    assert {("secrets", "redact", "aws_access_key_id"), ("secrets", "redact", "aws_secret_key")} <= kinds
    assert SECRET not in json.dumps(events) and AKID not in json.dumps(events)
