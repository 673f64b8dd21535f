"""Session caps, runaway detection and the kill switch through running gateways: two replicas on
one store, real SDKs and raw streams, against the strict fake upstream."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.contract.conftest import log_entry
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

STOPPED_KEY = "sk-sluice-stop-test-000000000000"
OTHER_KEY = "sk-sluice-stop-other-00000000000"
CAP_KEY = "sk-sluice-cap-test-0000000000000"
CAP_KEY_2 = "sk-sluice-cap-test-2222222222222"
LOOP_KEY = "sk-sluice-loop-test-000000000000"
HEADERS = {"anthropic-version": "2023-06-01"}
# Counters shared by the two replicas, as in production: the session caps' are exact across them.
REDIS_URL = f"redis://127.0.0.1:6379/{os.environ.get('SLUICE_TEST_REDIS_DB', '15')}"
RUN = uuid.uuid4().hex[:8]  # session ids of this run: counters of an earlier run live on in Redis


def _config(upstream: FakeUpstreamThread, store: Path) -> dict[str, Any]:
    return {
        "store": {"url": f"sqlite:///{store}"},
        "governance": {"backend": "redis", "redis_url": REDIS_URL, "spend_journal_path": str(store) + ".journal"},
        "audit": {"hmac_key": "session-control-hmac-key-0123456789", "key_id": "k1"},
        "providers": {
            "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant"}]},
            "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-o"}]},
        },
        "teams": [{"id": "team-run"}, {"id": "team-cap"}],
        "virtual_keys": [
            {
                "id": "vk-stop",
                "value": STOPPED_KEY,
                "team_id": "team-run",
                "provider_configs": [{"provider": "anthropic"}],
            },
            {"id": "vk-other", "value": OTHER_KEY, "provider_configs": [{"provider": "anthropic"}]},
            {"id": "vk-cap", "value": CAP_KEY, "team_id": "team-cap", "provider_configs": [{"provider": "anthropic"}]},
            {
                "id": "vk-cap2",
                "value": CAP_KEY_2,
                "team_id": "team-cap",
                "provider_configs": [{"provider": "anthropic"}],
            },
            {
                "id": "vk-loop",
                "value": LOOP_KEY,
                "provider_configs": [{"provider": "anthropic"}, {"provider": "openai"}],
            },
        ],
        "session_caps": [{"id": "cap-team", "team_id": "team-cap", "max_cost": 0.001}],
        "runaway": [{"id": "loops", "virtual_key_id": "vk-loop", "tool_loop_repeats": 3, "action": "pause"}],
    }


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayThread, GatewayThread, FakeUpstreamThread]]:
    tmp = tmp_path_factory.mktemp("session-control")
    with FakeUpstreamThread() as upstream:
        config = _config(upstream, tmp / "shared.db")
        with GatewayThread(config, tmp / "a") as a:
            (tmp / "b").mkdir()
            with GatewayThread({**config, "request_log": {"spill_path": str(tmp / "b" / "spill")}}, tmp / "b") as b:
                yield a, b, upstream


def _client(gateway: GatewayThread, key: str, session: str | None = None) -> anthropic.Anthropic:
    headers = {"x-claude-code-session-id": session} if session else {}
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0, default_headers=headers)


def _ask(client: anthropic.Anthropic, text: str = "hello") -> Any:
    return client.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": text}]
    )


def _until_refused(client: anthropic.Anthropic) -> anthropic.APIStatusError:
    """A safety net, not a timing assertion: the other replica polls every 0.25 s."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _ask(client)
        except anthropic.APIStatusError as exc:
            return exc
        time.sleep(0.05)
    raise AssertionError("never refused")


def _audit(gateway: GatewayThread, kind: str) -> list[dict[str, Any]]:
    async def fetch() -> list[dict[str, Any]]:
        await gateway.services.audit.drain()
        return [{"actor": r.actor, **r.data} async for r in gateway.services.store.audit_records() if r.kind == kind]

    return list(gateway.call(fetch()))


def test_a_key_stopped_on_one_replica_is_refused_on_the_other_and_resumed_the_same_way(
    replicas: tuple[GatewayThread, GatewayThread, FakeUpstreamThread],
) -> None:
    a, b, _ = replicas
    assert _ask(_client(b, STOPPED_KEY, "s-1")).content
    a.call(a.services.stops.throw("key", "vk-stop", "looping on CI", "admin:alice"))
    refused = _until_refused(_client(b, STOPPED_KEY, "s-1"))
    assert refused.status_code == 403
    assert "Sluice stopped this key (vk-stop): looping on CI (by admin:alice)" in refused.message
    assert refused.response.headers["x-should-retry"] == "false"
    # A stopped key cannot start a new session, nor go without one.
    for session in ("a-brand-new-session", None):
        with pytest.raises(anthropic.PermissionDeniedError):
            _ask(_client(b, STOPPED_KEY, session))
    assert _ask(_client(b, OTHER_KEY, "s-1")).content  # others go on
    [record] = [r for r in _audit(a, "stop") if r["target"] == "vk-stop"]
    assert record["actor"] == "admin:alice" and record["reason"] == "looping on CI"
    b.call(b.services.stops.lift("key", "vk-stop", "fixed", "admin:bob"))
    deadline = time.monotonic() + 20
    while True:  # resumed on the other replica too
        try:
            assert _ask(_client(a, STOPPED_KEY, "s-1")).content
            break
        except anthropic.PermissionDeniedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    [lifted] = [r for r in _audit(a, "resume") if r["target"] == "vk-stop"]
    assert lifted["actor"] == "admin:bob" and lifted["reason"] == "fixed"


async def _stream_until_stopped(a: GatewayThread, b: GatewayThread) -> tuple[bytes, str]:
    words = " ".join(f"word{i}" for i in range(90))  # 30 deltas of three words
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 400,
        "stream": True,
        "messages": [{"role": "user", "content": words}],
    }
    headers = {**HEADERS, "x-api-key": STOPPED_KEY, "x-claude-code-session-id": "streaming-session"}
    async with aiohttp.ClientSession() as http:
        async with http.post(b.base_url + "/v1/messages", json=body, headers=headers) as resp:
            assert resp.status == 200
            request_id = resp.headers["x-request-id"]
            received = await resp.content.readany()
            assert b"message_start" in received
            # Thrown on the other replica, for the session only (in another spelling).
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(
                    a.services.stops.throw("session", "  STREAMING-session", "runaway stream", "admin:carol"), a._loop
                )
            )
            received += await resp.read()
    return received, request_id


def test_a_stop_ends_a_running_stream_with_the_surfaces_error_and_bills_what_it_used(
    replicas: tuple[GatewayThread, GatewayThread, FakeUpstreamThread],
) -> None:
    a, b, upstream = replicas
    upstream.upstream.event_delay = 0.15
    try:
        received, request_id = asyncio.run(_stream_until_stopped(a, b))
    finally:
        upstream.upstream.event_delay = 0.0
    assert b"event: error" in received and b"Sluice stopped this session (streaming-session)" in received
    assert b"message_stop" not in received and b"word89" not in received
    row = log_entry(b, request_id)
    assert row["error_kind"] == "POLICY_STOPPED" and row["cost_pico"] > 0  # what was streamed is billed
    a.call(a.services.stops.lift("session", "streaming-session", "done", "admin:carol"))


async def _stream_stalled_then_stopped(a: GatewayThread, b: GatewayThread) -> tuple[bytes, str]:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 400,
        "stream": True,
        "messages": [{"role": "user", "content": " ".join(f"word{i}" for i in range(90))}],
    }
    headers = {**HEADERS, "x-api-key": STOPPED_KEY, "x-claude-code-session-id": f"stalled-{RUN}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(b.base_url + "/v1/messages", json=body, headers=headers) as resp:
            assert resp.status == 200
            request_id = resp.headers["x-request-id"]
            received = b""
            while b"content_block_delta" not in received:
                received += await resp.content.readany()
            # The provider is silent from here on (a hung upstream): no chunk will come to end it.
            await asyncio.wrap_future(
                asyncio.run_coroutine_threadsafe(
                    a.services.stops.throw("session", f"stalled-{RUN}", "hung agent", "admin:carol"), a._loop
                )
            )
            # Bounded so that the test fails (rather than hangs) when the stop waits for a chunk.
            received += await asyncio.wait_for(resp.read(), 30)
    return received, request_id


def test_a_stop_ends_a_stream_whose_provider_went_silent(
    replicas: tuple[GatewayThread, GatewayThread, FakeUpstreamThread],
) -> None:
    a, b, upstream = replicas
    cut_before = upstream.upstream.streams_cut_by_client
    upstream.upstream.stall_after_events = 4  # message_start, content_block_start, ping, one delta
    try:
        received, request_id = asyncio.run(_stream_stalled_then_stopped(a, b))
    finally:
        upstream.upstream.stall_after_events = None
    assert b"event: error" in received and f"Sluice stopped this session (stalled-{RUN})".encode() in received
    assert b"message_stop" not in received
    row = log_entry(b, request_id)
    assert row["error_kind"] == "POLICY_STOPPED" and row["cost_pico"] > 0  # the delta streamed is billed
    deadline = time.monotonic() + 10
    while upstream.upstream.streams_cut_by_client == cut_before:  # the provider's stream was closed
        assert time.monotonic() < deadline
        time.sleep(0.02)
    a.call(a.services.stops.lift("session", f"stalled-{RUN}", "done", "admin:carol"))


def test_a_session_cap_refuses_the_spent_session_with_the_budget_error_only(
    replicas: tuple[GatewayThread, GatewayThread, FakeUpstreamThread],
) -> None:
    a, b, _ = replicas
    session = f"cap-session-{RUN}"
    client = _client(a, CAP_KEY, session)
    for _ in range(100):
        try:
            _ask(client, "spend a little")
        except anthropic.APIStatusError as exc:
            refused = exc
            break
    else:
        raise AssertionError("the session cap never refused")
    assert refused.status_code == 402
    assert refused.body["error"]["type"] == "billing_error"  # type: ignore[index]
    assert f"Budget 'cap-team' (session {session}) is exhausted: limit $0.00 per session" in refused.message
    # Spent on the other replica too (the counter is shared), whatever the spelling.
    with pytest.raises(anthropic.APIStatusError) as again:
        _ask(_client(b, CAP_KEY, session.upper()))
    assert again.value.status_code == 402
    assert _ask(_client(a, CAP_KEY, session + "-2")).content  # a new session has its own cap
    assert _ask(_client(a, CAP_KEY_2, session)).content  # as has another key's session of that name
    with pytest.raises(anthropic.BadRequestError) as missing:
        _ask(_client(a, CAP_KEY))  # no session: it cannot dodge the cap by saying nothing
    assert "names no session" in missing.value.message


def _tool_loop(repeats: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "run the tests"}]
    for i in range(repeats):
        # The same call, its arguments spelled with their keys in another order each time.
        args = {"command": "pytest -x", "timeout": 60} if i % 2 else {"timeout": 60, "command": "pytest -x"}
        messages.append(
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": args}]}
        )
        messages.append(
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "is_error": True, "content": "exit 1"}],
            }
        )
    return messages


def test_a_failing_tool_loop_pauses_the_session_with_an_audit_event(
    replicas: tuple[GatewayThread, GatewayThread, FakeUpstreamThread],
) -> None:
    a, b, _ = replicas
    client = _client(a, LOOP_KEY, "loop-session")
    assert client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=_tool_loop(2)).content
    with pytest.raises(anthropic.PermissionDeniedError) as paused:
        client.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=_tool_loop(3))
    assert "Sluice paused this session (loop-session): runaway detected: tool 'Bash' failed 3 times" in (
        paused.value.message
    )
    assert _until_refused(_client(b, LOOP_KEY, "loop-session")).status_code == 403  # its next requests, everywhere
    assert _ask(_client(a, LOOP_KEY, "another-session")).content  # only that session is paused
    [event] = [r for r in _audit(a, "runaway") if r["session_id"] == "loop-session"]
    assert event["actor"] == "runaway:loops" and event["detector"] == "tool_loop" and event["failures"] == 3
    [stop] = [s for s in a.call(a.services.store.list_stops()) if s.target == "loop-session"]
    assert stop.key_id == "vk-loop" and stop.actor == "runaway:loops"


def test_a_loop_in_an_openai_chat_conversation_is_detected_too(
    replicas: tuple[GatewayThread, GatewayThread, FakeUpstreamThread],
) -> None:
    a, _, _ = replicas
    messages: list[dict[str, Any]] = [{"role": "user", "content": "fix it"}]
    for i in range(3):
        call = {"id": f"c{i}", "type": "function", "function": {"name": "shell", "arguments": '{"cmd": "make"}'}}
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "Error: make failed"})
    client = openai.OpenAI(
        base_url=a.base_url + "/v1", api_key=LOOP_KEY, max_retries=0, default_headers={"x-session-id": "chat-loop"}
    )
    with pytest.raises(openai.PermissionDeniedError) as paused:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    assert "tool 'shell' failed 3 times" in paused.value.message
    assert paused.value.code == "stopped_by_admin"  # type: ignore[attr-defined]
