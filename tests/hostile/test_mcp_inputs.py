"""Hostile JSON-RPC on the MCP endpoint (/mcp, Streamable HTTP), property-based with a fixed seed.
The key may call one tool (`remote/add`) and read one resource (`remote/notes://readme`). Per
example: no 5xx; the upstream server sees `tools/call` only for `add`, `resources/read` only for
`notes://readme` and never `prompts/get`; the other resource's text never comes back; and every
call that reached the upstream has a call record."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from tests.hostile import strategies as hs
from tests.hostile.conftest import BUDGETED, MCP_KEY, Answer, Stack

ACCEPT = "application/json, text/event-stream"
TOOL_NAMES = [
    "remote__add",
    "remote__add",
    "remote__add",
    "remote__slow",
    "remote__add\x00",
    "REMOTE__add",
    "remote__add ",
    "remote/add",
]
TOOL_NAMES += [
    "remote__../add",
    "remote____add",
    "remote__add#x",
    "remote__*",
    "",
    "remote__",
    "__add",
    "everything__echo",
]
GRANTED = "sluice://remote/notes://readme"
URIS = [GRANTED, GRANTED, GRANTED, "sluice://remote/notes://secret", "sluice://remote/notes://readme/../secret"]
URIS += [
    "sluice://remote/notes://readme%2F..%2Fsecret",
    "sluice://remote/notes%3A%2F%2Fsecret",
    "sluice://REMOTE/notes://secret",
]
URIS += ["sluice://remote/NOTES://secret", "sluice://remote/./notes://secret", "sluice://remote/notes://readme\x00"]
URIS += ["sluice://remote/notes://readme?x=1", "sluice://remote/notes://readme#x", "sluice://remote/notes://*", ""]
URIS += [
    "sluice://remote/",
    "sluice://",
    "notes://secret",
    "sluice://remote/notes://%72eadme",
    "sluice://remote//notes://secret",
]
METHODS = ["tools/call"] * 3 + ["resources/read"] * 3 + ["prompts/get", "tools/list"]
METHODS += ["resources/list", "resources/templates/list", "prompts/list", "ping", "initialize", "logging/setLevel"]
SETTINGS = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Session:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        hello = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "h", "version": "1"},
            },
        }
        answer = self.post(orjson.dumps(hello), session=None)
        assert answer.status == 200, answer
        self.id = answer.headers["mcp-session-id"]
        done = self.post(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')
        assert done.status == 202, done

    def post(self, body: bytes, *, session: str | bool | None = True, key: str = MCP_KEY) -> Answer:
        headers = {"content-type": "application/json", "accept": ACCEPT, "authorization": f"Bearer {key}"}
        if session is True:
            headers["mcp-session-id"] = self.id
        elif isinstance(session, str):
            headers["mcp-session-id"] = session
        return self.stack.send("POST", b"/mcp", headers, body)


@pytest.fixture(scope="module")
def session(stack: Stack) -> Session:
    return Session(stack)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A well-formed request with a hostile tool name, URI or arguments, then at most one more
    hostile change of its envelope or bytes."""
    method = draw(st.sampled_from(METHODS))
    params: Any = {}
    if method == "tools/call":
        params = {"name": draw(st.sampled_from(TOOL_NAMES) | st.text(max_size=12)), "arguments": {"a": 1, "b": 2}}
        if draw(st.booleans()):
            params["arguments"] = draw(st.sampled_from([{"a": draw(hs.scalars()), "b": 2}, draw(hs.values())]))
    elif method == "resources/read":
        params = {"uri": draw(st.sampled_from(URIS) | st.text(max_size=20))}
    elif method == "prompts/get":
        params = {"name": draw(st.sampled_from(["remote__review", "remote/review", "x"])), "arguments": {"code": "x"}}
    elif method == "initialize":
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "h", "version": "1"}}
    doc: dict[str, Any] = {"jsonrpc": "2.0", "id": draw(st.integers(1, 10**6)), "method": method, "params": params}
    change = draw(st.sampled_from(_CHANGES))
    if change in ("jsonrpc", "id", "method", "params"):
        doc[change] = draw(hs.values())
    elif change == "drop":
        doc.pop(draw(st.sampled_from(sorted(doc))))
    raw = hs.dumps(doc)
    if change == "batch":
        return b"[" + raw + b", " + raw + b"]"
    if change == "truncate":
        return raw[: len(raw) // 2]
    if change == "deep":
        return raw[:-1] + b', "params": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    if change == "utf8":
        return raw[:-1] + b', "x": "\xff\xc0"}'
    if change == "empty":
        return b""
    if change == "duplicate":  # the gateway and the upstream must read the same method and name
        return raw[:-1] + b', "method": "tools/call", "params": {"name": "remote__slow", "arguments": {"seconds": 0}}}'
    return raw


_CHANGES = ["none"] * 8 + "jsonrpc id method params drop batch truncate deep utf8 empty duplicate".split()


def test_hostile_json_rpc_keeps_every_invariant(stack: Stack, session: Session) -> None:
    @SETTINGS
    @given(messages(), st.sampled_from([True] * 6 + [None, "not-a-session"]))
    @example(
        b'{"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "' + GRANTED.encode() + b'"}}', True
    )
    @example(
        b'{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "remote__add", "arguments": {}}}', True
    )
    def run(body: bytes, which: str | bool | None) -> None:
        note(repr(body[:2000]))
        before, records = len(stack.mcp.calls), len(stack.gateway.services.mcp.calls)
        answer = session.post(body, session=which)
        assert answer.status < 500, answer
        assert b"remote secret" not in answer.body, answer
        reached = stack.mcp.calls[before:]
        for method, params in reached:
            assert method != "tools/call" or params.get("name") == "add", reached
            assert method != "resources/read" or params.get("uri") == "notes://readme", reached
            assert method != "prompts/get", reached
        if any(m in ("tools/call", "resources/read") for m, _ in reached):
            assert len(stack.gateway.services.mcp.calls) > records, "an upstream call without a call record"

    run()


def test_a_key_without_mcp_grants_and_a_bad_key_reach_nothing(stack: Stack, session: Session) -> None:
    call = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "remote__add", "arguments": {}}}'
    before = len(stack.mcp.calls)
    for key in (BUDGETED, "sk-sluice-not-a-key-0000"):
        answer = session.post(call, key=key)
        assert answer.status in (400, 401, 403, 404, 429), answer  # 429: the address's failures are throttled
    assert [m for m, _ in stack.mcp.calls[before:] if m == "tools/call"] == []
