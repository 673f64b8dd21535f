"""The official `anthropic` SDK against a running gateway, in front of a fake Anthropic API."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import anthropic
import pytest

from tests.contract.conftest import (
    ANTHROPIC_SECRET,
    DEV_KEY,
    EXPIRED_KEY,
    FAKE_KEY,
    JUNIOR_KEY,
    OFF_KEY,
    log_entry,
)
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

FIXTURES = Path(__file__).parents[1] / "fixtures"


def client(gateway: GatewayThread, key: str = DEV_KEY, **kw: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0, **kw)  # type: ignore[arg-type]


def test_message_goes_through_with_provider_credential(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    raw = client(gateway).messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        messages=[{"role": "user", "content": "hello gateway"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14", "X-Claude-Code-Session-Id": "sess-42"},
    )
    msg = raw.parse()
    assert msg.model == "claude-sonnet-4-6"
    assert "hello gateway" in msg.content[0].text  # type: ignore[union-attr]
    request_id = raw.headers["x-request-id"]
    [seen] = upstream.requests
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == ANTHROPIC_SECRET  # the provider key, added by the gateway
    assert seen.headers["anthropic-version"] == raw.http_request.headers["anthropic-version"]  # untouched
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert DEV_KEY not in json.dumps(seen.headers)  # the virtual key never leaves the gateway
    entry = log_entry(gateway, request_id)
    assert entry["virtual_key_id"] == "vk-dev" and entry["virtual_key_name"] == "Developer Dana"
    assert entry["team_id"] == "team-platform" and entry["customer_id"] == "cust-acme"
    assert entry["provider"] == "anthropic" and entry["provider_key_name"] == "anthropic-primary"
    assert entry["session_id"] == "sess-42" and entry["status"] == 200 and entry["decision"] == "allow"
    assert entry["input_tokens"] == msg.usage.input_tokens and entry["output_tokens"] == msg.usage.output_tokens
    assert entry["cost_pico"] > 0 and entry["latency_ms"] > 0
    assert "anthropic" in entry["client"].lower() or entry["client"]


def test_streaming_is_metered_from_stream_usage(gateway: GatewayThread) -> None:
    with client(gateway).messages.stream(
        model="claude-haiku-4-5-20251001", max_tokens=100, messages=[{"role": "user", "content": "stream please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert text
    entry = log_entry(gateway, request_id)
    assert entry["stream"] is True or entry["stream"] == 1
    assert entry["input_tokens"] == final.usage.input_tokens
    assert entry["output_tokens"] == final.usage.output_tokens
    assert entry["cache_read_tokens"] == (final.usage.cache_read_input_tokens or 0)
    assert entry["cache_write_tokens"] == (final.usage.cache_creation_input_tokens or 0)
    assert entry["ttfb_ms"] is not None and entry["ttfb_ms"] <= entry["latency_ms"]


def test_stream_and_body_pass_byte_for_byte(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    body = (
        b'{ "model" : "claude-sonnet-4-6",  "max_tokens":50, "stream": true,\n'
        b' "messages":[{"role":"user","content":"bytes"}]}'
    )
    headers = {"x-api-key": DEV_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    via_gateway = _post(gateway.base_url + "/v1/messages", body, headers)
    assert upstream.requests[-1].body == body  # the upstream got exactly what the client sent
    direct = _post(upstream.base_url + "/v1/messages", body, {**headers, "x-api-key": ANTHROPIC_SECRET})
    assert _without_ids(via_gateway) == _without_ids(direct)


def _post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return bytes(resp.read())


def _without_ids(stream: bytes) -> bytes:
    # The fake may mint a fresh message id per response; everything else must match exactly.
    import re

    return re.sub(rb'"msg_[A-Za-z0-9]+"', b'"msg_X"', stream)


def test_tools_round_trip(gateway: GatewayThread) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }
    ]
    msg = client(gateway).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=tools,  # type: ignore[arg-type]
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "use a tool to get the weather in Paris"}],
    )
    assert msg.stop_reason == "tool_use"
    assert any(block.type == "tool_use" for block in msg.content)


def test_count_tokens(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    count = client(gateway).messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "count me"}]
    )
    assert count.input_tokens > 0
    assert upstream.requests[-1].path == "/v1/messages/count_tokens"


def test_beta_query_and_headers_are_forwarded(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    body = b'{"model":"claude-sonnet-4-6","max_tokens":20,"messages":[{"role":"user","content":"beta"}]}'
    headers = {
        "authorization": f"Bearer {DEV_KEY}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "context-management-2025-06-27",
        "content-type": "application/json",
    }
    _post(gateway.base_url + "/v1/messages?beta=true", body, headers)
    assert upstream.requests[-1].query == "beta=true"
    assert upstream.requests[-1].headers["anthropic-beta"] == "context-management-2025-06-27"
    assert upstream.requests[-1].headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize(
    ("key", "error", "status", "words"),
    [
        (None, anthropic.AuthenticationError, 401, "No virtual key sent"),
        ("sk-sluice-nope", anthropic.AuthenticationError, 401, "Invalid virtual key"),
        (OFF_KEY, anthropic.PermissionDeniedError, 403, "inactive"),
        (EXPIRED_KEY, anthropic.PermissionDeniedError, 403, "expired"),
    ],
)
def test_key_errors_in_anthropic_shape(
    gateway: GatewayThread,
    upstream: FakeUpstreamThread,
    key: str | None,
    error: type[Exception],
    status: int,
    words: str,
) -> None:
    # Without a key the SDK refuses to send at all, so that case strips the credential header.
    c = client(gateway, key or "unused", default_headers={} if key else {"authorization": anthropic.Omit()})
    with pytest.raises(error) as exc:
        c.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == status  # type: ignore[attr-defined]
    body = exc.value.body  # type: ignore[attr-defined]
    assert body["type"] == "error" and words in body["error"]["message"]
    assert upstream.requests == []


def test_model_outside_allowlist_is_403_before_any_upstream_call(
    gateway: GatewayThread, upstream: FakeUpstreamThread
) -> None:
    with pytest.raises(anthropic.PermissionDeniedError) as exc:
        client(gateway, JUNIOR_KEY).messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert "Model 'claude-sonnet-4-6' is not allowed for virtual key 'vk-junior'" in str(exc.value)
    assert upstream.requests == []
    entry = log_entry(gateway, exc.value.response.headers["x-request-id"])
    assert entry["decision"] == "deny" and entry["status"] == 403
    assert entry["error_kind"] == "POLICY_MODEL_DENIED" and entry["virtual_key_id"] == "vk-junior"


def test_upstream_rate_limit_passes_through(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    upstream.upstream.fail_next(429, body, {"retry-after": "7"})
    with pytest.raises(anthropic.RateLimitError) as exc:
        client(gateway).messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.response.headers["retry-after"] == "7"
    assert exc.value.body == body  # type: ignore[attr-defined]


def test_fake_provider_rate_limit_in_anthropic_shape(gateway: GatewayThread) -> None:
    with pytest.raises(anthropic.RateLimitError) as exc:
        client(gateway, FAKE_KEY).messages.create(
            model="fake/error-429", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.response.headers["retry-after"] == "1"
    assert exc.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_upstream_credential_failure_hides_the_provider_key(
    gateway: GatewayThread, upstream: FakeUpstreamThread
) -> None:
    upstream.upstream.fail_next(
        401,
        {
            "type": "error",
            "error": {"type": "authentication_error", "message": f"invalid x-api-key {ANTHROPIC_SECRET}"},
        },
    )
    with pytest.raises(anthropic.InternalServerError) as exc:
        client(gateway).messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    assert ANTHROPIC_SECRET not in exc.value.response.text
    assert "anthropic-primary" in exc.value.response.text


def test_fake_provider_stream_abort_ends_with_error_event(gateway: GatewayThread) -> None:
    events = []
    with pytest.raises(anthropic.APIStatusError):  # the SDK raises on the in-stream error event
        with client(gateway, FAKE_KEY).messages.stream(
            model="fake/stream-abort", max_tokens=50, messages=[{"role": "user", "content": "abort"}]
        ) as stream:
            for event in stream:
                events.append(event.type)
    assert events and events[0] == "message_start"


def test_head_prewarm_and_request_id(gateway: GatewayThread) -> None:
    for path in ("/", "/anthropic"):
        req = urllib.request.Request(gateway.base_url + path, method="HEAD")
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200


def test_anthropic_prefix_route(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    c = anthropic.Anthropic(base_url=gateway.base_url + "/anthropic", api_key=DEV_KEY, max_retries=0)
    msg = c.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.content
    assert upstream.requests[-1].path == "/v1/messages"


def test_claude_code_request_passes_byte_for_byte(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    """The 115 KB body Claude Code really sends (24 tools, system blocks with cache_control,
    thinking, context_management, output_config, metadata.user_id as a JSON string)."""
    body = (FIXTURES / "claude_code" / "messages_request.json").read_bytes()
    captured = json.loads((FIXTURES / "claude_code" / "messages_request_headers.json").read_text())["headers"]
    headers = {
        k: v
        for k, v in captured.items()
        if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
    }
    headers["Authorization"] = f"Bearer {DEV_KEY}"
    stream = _post(gateway.base_url + "/v1/messages?beta=true", body, headers)
    seen = upstream.requests[-1]
    assert seen.body == body
    assert seen.query == "beta=true"
    assert seen.headers["anthropic-beta"] == captured["anthropic-beta"]
    assert b"event: message_stop" in stream
    rows = [r for r in gateway.request_log() if r["session_id"] == captured["X-Claude-Code-Session-Id"]]
    assert rows and rows[-1]["client"] == captured["User-Agent"]
    assert rows[-1]["user_id"] and "device_id" in rows[-1]["user_id"]
