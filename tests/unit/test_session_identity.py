"""Which session a request belongs to, from what each real client sends (the recorded requests in
tests/fixtures), and hostile values of the session and x-sluice-* headers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sluice.core.context import RequestRecord
from sluice.core.types import Operation, WireFormat
from sluice.engine.context import RequestContext
from sluice.http.identity import fill_caller

FIXTURES = Path(__file__).parents[1] / "fixtures"


def ctx_of(headers: dict[str, str], doc: dict[str, Any] | None = None) -> RequestContext:
    ctx = RequestContext(RequestRecord("req_1", WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE, "/v1/messages"))
    fill_caller(ctx, {k.lower(): v for k, v in headers.items()}, doc or {})
    return ctx


def recorded(client: str, name: str) -> dict[str, str]:
    raw = json.loads((FIXTURES / client / name).read_text())["headers"]
    return dict(raw) if isinstance(raw, dict) else {k: v for k, v in raw}


def test_claude_code_is_grouped_by_its_session_header_the_same_as_in_metadata() -> None:
    body = json.loads((FIXTURES / "claude_code" / "messages_request.json").read_text())
    ctx = ctx_of(recorded("claude_code", "messages_request_headers.json"), body)
    assert ctx.session_id == json.loads(body["metadata"]["user_id"])["session_id"]
    assert ctx.client.startswith("claude-cli/2.1.197")
    # Without the header (an older Claude Code), the id inside metadata.user_id.
    assert ctx_of({}, body).session_id == ctx.session_id


def test_codex_is_grouped_by_its_session_id_header() -> None:
    first = ctx_of(recorded("codex", "responses_request_headers.json"))
    follow_up = ctx_of(recorded("codex", "responses_request_tool_result_headers.json"))
    assert first.session_id == "01a22608-2eaf-7543-b641-6ac30707b16f"
    assert follow_up.session_id is not None and first.client.startswith("codex_exec/0.171.0")


def test_gemini_cli_sends_no_session_so_it_names_one_with_x_sluice_session() -> None:
    headers = recorded("gemini_cli", "stream_generate_content_request_headers.json")
    assert ctx_of(headers).session_id is None
    assert ctx_of({**headers, "x-sluice-session": "gem-42"}).session_id == "gem-42"


def test_where_the_agent_works_comes_from_the_x_sluice_headers() -> None:
    ctx = ctx_of({"x-sluice-repo": "acme/api", "x-sluice-branch": "fix/login", "x-sluice-cwd": "/home/a/api"})
    assert (ctx.repo, ctx.branch, ctx.cwd) == ("acme/api", "fix/login", "/home/a/api")
    assert (ctx_of({}).repo, ctx_of({"x-sluice-branch": "  "}).branch) == (None, None)


def test_hostile_values_lose_control_characters_and_are_cut() -> None:
    ctx = ctx_of(
        {
            "x-sluice-session": "s\x1b[31mred\x00" + "x" * 500,
            "x-sluice-repo": "r" * 5000,
            "x-sluice-branch": "main\r\nx-evil: 1",
            "user-agent": "ua\x7f\x85" + "u" * 1000,
        }
    )
    assert ctx.session_id == ("s[31mred" + "x" * 500)[:200]
    assert ctx.repo == "r" * 300 and ctx.branch == "mainx-evil: 1"
    assert ctx.client.startswith("uau") and len(ctx.client) == 300
    # A body field may hold what a header cannot: a newline in the session inside metadata.user_id.
    body = {"metadata": {"user_id": json.dumps({"session_id": "a\nb\u2028c"})}}
    assert ctx_of({}, body).session_id == "abc"
    assert ctx_of({"x-sluice-session": "\x00\x01"}).session_id is None  # nothing left: no session
