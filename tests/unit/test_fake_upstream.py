"""The fake upstream speaks the real wire formats: its fixtures round-trip byte for byte through its templates, and
the official `anthropic` and `openai` SDKs, pointed straight at it, parse everything it sends."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.fakes.recorded_wires import AnthropicReply, AnthropicWire, OpenAIReply, OpenAIWire
from tests.fakes.upstream import FakeUpstream, FakeUpstreamThread
from tests.fakes.wire_kit import FIXTURES, ToolUse, compact_json, embedding_vector, parse_sse, pretty_json

REPO = Path(__file__).resolve().parents[2]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
LOOKUP = {"name": "lookup", "description": "Look a word up", "input_schema": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstreamThread]:
    with FakeUpstreamThread() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh(upstream: FakeUpstreamThread) -> None:
    upstream.upstream.reset()


def claude(upstream: FakeUpstreamThread, **kw: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=upstream.base_url, api_key="sk-ant-test-0123456789", max_retries=0, **kw)


def gpt(upstream: FakeUpstreamThread, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.base_url + "/v1", api_key="sk-test-0123456789", max_retries=0, **kw)


def post(url: str, body: dict[str, Any] | bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json", **headers}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"authorization": "Bearer sk-test"}


# ---------------------------------------------------------------------------------------------------------------------
# Fixtures round-trip byte for byte through the templates the fake serves from
# ---------------------------------------------------------------------------------------------------------------------


def _anthropic_usage(usage: dict[str, Any], output: int) -> dict[str, int]:
    return {
        "input_tokens": usage["input_tokens"],
        "output_tokens": output,
        "cache_creation_input_tokens": usage["cache_creation_input_tokens"],
        "cache_read_input_tokens": usage["cache_read_input_tokens"],
        "ephemeral_5m_input_tokens": usage["cache_creation"]["ephemeral_5m_input_tokens"],
        "ephemeral_1h_input_tokens": usage["cache_creation"]["ephemeral_1h_input_tokens"],
    }


@pytest.mark.parametrize("name", ["message.json", "message_tool_use.json"])
def test_anthropic_message_fixture_round_trips(name: str) -> None:
    raw = (FIXTURES / "anthropic" / name).read_bytes()
    doc = json.loads(raw)
    texts = [b["text"] for b in doc["content"] if b["type"] == "text"]
    tool = next((ToolUse(b["id"], b["name"], b["input"]) for b in doc["content"] if b["type"] == "tool_use"), None)
    usage = _anthropic_usage(doc["usage"], doc["usage"]["output_tokens"])
    reply = AnthropicReply(
        model=doc["model"], id=doc["id"], text_chunks=texts or None, tool=tool, stop_reason=doc["stop_reason"], **usage
    )
    assert AnthropicWire().render_message(reply) == raw
    assert not raw.endswith(b"\n")


@pytest.mark.parametrize("name", ["message_stream.sse", "message_tool_use_stream.sse"])
def test_anthropic_stream_fixture_round_trips(name: str) -> None:
    raw = (FIXTURES / "anthropic" / name).read_bytes()
    events = [(e, json.loads(d)) for e, d in parse_sse(raw)]
    assert all(e == d["type"] for e, d in events)  # the event line always names the data's type
    start = events[0][1]["message"]
    final = next(d for e, d in events if e == "message_delta")
    texts = [d["delta"]["text"] for e, d in events if e == "content_block_delta" and d["delta"]["type"] == "text_delta"]
    pieces = [
        d["delta"]["partial_json"]
        for e, d in events
        if e == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    tool_start = next(
        (
            d["content_block"]
            for e, d in events
            if e == "content_block_start" and d["content_block"]["type"] == "tool_use"
        ),
        None,
    )
    tool = None
    if tool_start is not None:
        tool = ToolUse(tool_start["id"], tool_start["name"], json.loads("".join(pieces)), chunks=pieces)
    reply = AnthropicReply(
        model=start["model"],
        id=start["id"],
        text_chunks=texts,
        tool=tool,
        stop_reason=final["delta"]["stop_reason"],
        **_anthropic_usage(start["usage"], final["usage"]["output_tokens"]),
    )
    assert b"".join(AnthropicWire().render_stream(reply)) == raw


@pytest.mark.parametrize("name", ["chat_completion.json", "chat_completion_tool_calls.json"])
def test_openai_completion_fixture_round_trips(name: str) -> None:
    raw = (FIXTURES / "openai" / name).read_bytes()
    doc = json.loads(raw)
    choice = doc["choices"][0]
    calls = choice["message"].get("tool_calls")
    tool = None
    if calls:
        fn = calls[0]["function"]
        tool = ToolUse(calls[0]["id"], fn["name"], json.loads(fn["arguments"]))
    content = choice["message"]["content"]
    reply = OpenAIReply(
        model=doc["model"],
        id=doc["id"],
        created=doc["created"],
        content_chunks=None if content is None else [content],
        tool=tool,
        finish_reason=choice["finish_reason"],
        prompt_tokens=doc["usage"]["prompt_tokens"],
        completion_tokens=doc["usage"]["completion_tokens"],
        cached_tokens=doc["usage"]["prompt_tokens_details"]["cached_tokens"],
    )
    assert OpenAIWire().render_completion(reply) == raw
    assert raw == pretty_json(doc)  # two-space indent and a trailing newline, as the API sends


def _openai_stream_reply(raw: bytes) -> OpenAIReply:
    chunks = [json.loads(d) for _, d in parse_sse(raw) if d != b"[DONE]"]
    usage = chunks[-1]["usage"]
    deltas = [c["choices"][0]["delta"] for c in chunks[1:] if c["choices"] and c["choices"][0]["finish_reason"] is None]
    finish = next(c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
    first = chunks[0]["choices"][0]["delta"]
    tool = None
    if first.get("tool_calls"):
        pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas]
        call = first["tool_calls"][0]
        tool = ToolUse(call["id"], call["function"]["name"], json.loads("".join(pieces)), chunks=pieces)
    return OpenAIReply(
        model=chunks[0]["model"],
        id=chunks[0]["id"],
        created=chunks[0]["created"],
        content_chunks=None if tool else [d["content"] for d in deltas],
        tool=tool,
        finish_reason=finish,
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        cached_tokens=usage["prompt_tokens_details"]["cached_tokens"],
        obfuscation=[c["obfuscation"] for c in chunks],
    )


@pytest.mark.parametrize("name", ["chat_completion_stream.sse", "chat_completion_tool_calls_stream.sse"])
def test_openai_stream_fixture_round_trips(name: str) -> None:
    raw = (FIXTURES / "openai" / name).read_bytes()
    assert raw.endswith(b"data: [DONE]\n\n") and b"event:" not in raw
    reply = _openai_stream_reply(raw)
    assert b"".join(OpenAIWire().render_stream(reply, include_usage=True)) == raw
    # Without stream_options.include_usage the same chunks come without a "usage" key and without the usage chunk.
    chunks = [json.loads(d) for _, d in parse_sse(raw) if d != b"[DONE]"]
    expected = (
        b"".join(
            b"data: " + compact_json({k: v for k, v in c.items() if k != "usage"}) + b"\n\n"
            for c in chunks
            if c["choices"]
        )
        + b"data: [DONE]\n\n"
    )
    assert b"".join(OpenAIWire().render_stream(reply, include_usage=False)) == expected


def test_openai_embeddings_fixture_round_trips() -> None:
    raw = (FIXTURES / "openai" / "embeddings.json").read_bytes()
    doc = json.loads(raw)
    vectors = [d["embedding"] for d in doc["data"]]
    assert OpenAIWire().render_embeddings(doc["model"], vectors, doc["usage"]["prompt_tokens"]) == raw


def test_error_fixtures_have_the_provider_shapes() -> None:
    for path in (FIXTURES / "anthropic").glob("error_*.json"):
        raw = path.read_bytes()
        doc = json.loads(raw)
        assert list(doc) == ["type", "error", "request_id"] and doc["type"] == "error", path
        assert list(doc["error"]) == ["type", "message"] and raw == compact_json(doc), path
    for path in (FIXTURES / "openai").glob("error_*.json"):
        raw = path.read_bytes()
        doc = json.loads(raw)
        assert list(doc["error"]) == ["message", "type", "param", "code"], path
        assert raw == pretty_json(doc, indent=4), path  # OpenAI error bodies use a four-space indent


# ---------------------------------------------------------------------------------------------------------------------
# Anthropic Messages through the official SDK
# ---------------------------------------------------------------------------------------------------------------------


def test_anthropic_message(upstream: FakeUpstreamThread) -> None:
    raw = claude(upstream).messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "hello fake"}]
    )
    msg = raw.parse()
    [seen] = upstream.requests
    assert msg.model == "claude-sonnet-4-6" and msg.id.startswith("msg_01") and msg.type == "message"
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hello fake"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens == len(seen.body) // 4
    assert msg.usage.output_tokens == len("echo: hello fake") // 4
    assert msg.usage.cache_read_input_tokens == 0 and msg.usage.cache_creation_input_tokens == 0
    assert raw.headers["request-id"].startswith("req_") and raw.headers["content-type"] == "application/json"
    assert seen.method == "POST" and seen.path == "/v1/messages" and seen.query == ""
    assert seen.json()["messages"] == [{"role": "user", "content": "hello fake"}]
    assert seen.headers["anthropic-version"]


def test_anthropic_prompt_caching_reports_cache_tokens(upstream: FakeUpstreamThread) -> None:
    msg = claude(upstream).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "cached please"}]}],
    )
    assert msg.content[0].text == "echo: cached please"  # type: ignore[union-attr]
    assert msg.usage.cache_creation_input_tokens == 1843 and msg.usage.cache_read_input_tokens == 20452
    assert msg.usage.cache_creation is not None and msg.usage.cache_creation.ephemeral_5m_input_tokens == 1843


def test_anthropic_echo_uses_the_last_user_text_truncated(upstream: FakeUpstreamThread) -> None:
    long = "x" * 500
    msg = claude(upstream).messages.create(
        model="m",
        max_tokens=10,
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "<system-reminder>"}, {"type": "text", "text": long}],
            },
        ],
    )
    assert msg.content[0].text == "echo: " + "x" * 200  # type: ignore[union-attr]


def test_anthropic_stream(upstream: FakeUpstreamThread) -> None:
    with claude(upstream).messages.stream(
        model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "stream me a few words"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        content_type = stream.response.headers["content-type"]
    seen = upstream.requests[-1]
    assert text == "echo: stream me a few words"
    assert content_type == "text/event-stream; charset=utf-8"
    assert final.model == "claude-haiku-4-5" and final.stop_reason == "end_turn"
    assert final.usage.input_tokens == len(seen.body) // 4
    assert final.usage.output_tokens == len(text) // 4


def test_anthropic_stream_bytes_have_the_event_structure(upstream: FakeUpstreamThread) -> None:
    body = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": "one two three four five six seven"}],
    }
    status, headers, raw = post(upstream.base_url + "/v1/messages", body, ANTHROPIC_HEADERS)
    assert status == 200 and headers["content-type"] == "text/event-stream; charset=utf-8"
    blocks = raw.split(b"\n\n")
    assert blocks[-1] == b"" and all(b.startswith(b"event: ") and b.count(b"\n") == 1 for b in blocks[:-1])
    events = [(e, json.loads(d)) for e, d in parse_sse(raw)]
    names = [e for e, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(e == d["type"] for e, d in events)
    assert b'event: ping\ndata: {"type": "ping"}\n\n' in raw
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["output_tokens"] == 1
    assert (
        "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
        == "echo: one two three four five six seven"
    )


def test_anthropic_tool_use_when_asked(upstream: FakeUpstreamThread) -> None:
    msg = claude(upstream).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=[WEATHER, LOOKUP],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Please use a tool to get the weather in Paris"}],
    )
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    call = msg.content[1]
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_01")
    assert call.input == {"city": "Please use a tool to get the weather in Paris"}


def test_anthropic_forced_tool_choice(upstream: FakeUpstreamThread) -> None:
    msg = claude(upstream).messages.create(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=[WEATHER, LOOKUP],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": "lookup"},
        messages=[{"role": "user", "content": "whatever"}],
    )
    assert msg.stop_reason == "tool_use"
    assert [(b.type, getattr(b, "name", None)) for b in msg.content] == [("tool_use", "lookup")]
    assert msg.content[0].input == {}  # type: ignore[union-attr]


def test_anthropic_tools_without_trigger_answer_text(upstream: FakeUpstreamThread) -> None:
    msg = claude(upstream).messages.create(
        model="m",
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "please use a tool"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
    )
    assert msg.stop_reason == "end_turn" and msg.content[0].text == "echo: please use a tool"  # type: ignore[union-attr]


def test_anthropic_tool_use_stream(upstream: FakeUpstreamThread) -> None:
    with claude(upstream).messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=200,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "use a tool: weather in Rome"}],
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert "input_json" in events
    assert final.stop_reason == "tool_use" and final.content[1].type == "tool_use"
    assert final.content[1].input == {"city": "use a tool: weather in Rome"}
    body = upstream.requests[-1].body
    _, _, raw = post(upstream.base_url + "/v1/messages", body, ANTHROPIC_HEADERS)
    deltas = [json.loads(d)["delta"] for e, d in parse_sse(raw) if e == "content_block_delta"]
    pieces = [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"]
    assert pieces[0] == "" and json.loads("".join(pieces)) == {"city": "use a tool: weather in Rome"}


def test_anthropic_count_tokens(upstream: FakeUpstreamThread) -> None:
    count = claude(upstream).messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "count me, please"}]
    )
    seen = upstream.requests[-1]
    assert seen.path == "/v1/messages/count_tokens"
    assert count.input_tokens == len(seen.body) // 4


def test_anthropic_models(upstream: FakeUpstreamThread) -> None:
    models = list(claude(upstream).models.list())
    assert "claude-sonnet-4-5-20250929" in [m.id for m in models]
    assert all(m.type == "model" for m in models)


def test_anthropic_beta_query_and_headers_are_recorded(upstream: FakeUpstreamThread) -> None:
    claude(upstream).beta.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "beta"}], betas=["context-management-2025-06-27"]
    )
    assert upstream.requests[-1].headers["anthropic-beta"] == "context-management-2025-06-27"
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "beta"}]}
    status, _, _ = post(upstream.base_url + "/v1/messages?beta=true", body, ANTHROPIC_HEADERS)  # as Claude Code sends
    seen = upstream.requests[-1]
    assert status == 200 and seen.path == "/v1/messages" and seen.query == "beta=true"


@pytest.mark.parametrize(
    ("model", "error", "status", "kind"),
    [
        ("claude-error-429", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("claude-error-500", anthropic.InternalServerError, 500, "api_error"),
        ("claude-error-529", anthropic.OverloadedError, 529, "overloaded_error"),
    ],
)
def test_anthropic_model_scripted_errors(
    upstream: FakeUpstreamThread, model: str, error: type[anthropic.APIStatusError], status: int, kind: str
) -> None:
    with pytest.raises(error) as exc:
        claude(upstream).messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == status
    body = exc.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == kind
    assert body["request_id"] == exc.value.response.headers["request-id"]
    if status == 429:
        assert exc.value.response.headers["retry-after"] == "1"


def test_anthropic_auth_errors(upstream: FakeUpstreamThread) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    status, _, raw = post(upstream.base_url + "/v1/messages", body, {"anthropic-version": "2023-06-01"})
    doc = json.loads(raw)
    assert status == 401 and doc["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}
    status, _, raw = post(upstream.base_url + "/v1/messages", body, {"x-api-key": "sk-ant-test"})
    assert status == 400 and json.loads(raw)["error"]["message"] == "anthropic-version: header is required"
    upstream.upstream.valid_keys = {"sk-ant-good"}
    with pytest.raises(anthropic.AuthenticationError) as exc:
        claude(upstream).messages.create(**body)
    assert exc.value.body["error"]["message"] == "invalid x-api-key"  # type: ignore[index]
    status, _, _ = post(upstream.base_url + "/v1/messages", body, {**ANTHROPIC_HEADERS, "x-api-key": "sk-ant-good"})
    assert status == 200


def test_anthropic_bad_request(upstream: FakeUpstreamThread) -> None:
    status, _, raw = post(upstream.base_url + "/v1/messages", {"model": "m", "messages": []}, ANTHROPIC_HEADERS)
    doc = json.loads(raw)
    assert status == 400 and doc["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}


def test_fail_next_scripts_the_next_answers(upstream: FakeUpstreamThread) -> None:
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    upstream.upstream.fail_next(429, body, {"retry-after": "7"}, times=2)
    c = claude(upstream)
    for _ in range(2):
        with pytest.raises(anthropic.RateLimitError) as exc:
            c.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert exc.value.body == body and exc.value.response.headers["retry-after"] == "7"
    assert c.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}]).content
    upstream.upstream.fail_next(529)
    with pytest.raises(anthropic.OverloadedError):
        c.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    upstream.upstream.fail_next(500)
    with pytest.raises(openai.InternalServerError) as oexc:
        gpt(upstream).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert oexc.value.body["type"] == "server_error"  # type: ignore[index]
    assert len(upstream.requests) == 5


def test_anthropic_stream_abort_breaks_the_connection(upstream: FakeUpstreamThread) -> None:
    events: list[str] = []
    # A transport error (the SDK's HTTP stack reports the incomplete chunked body), not an API error.
    with pytest.raises(Exception) as exc:
        with claude(upstream).messages.stream(
            model="claude-stream-abort", max_tokens=50, messages=[{"role": "user", "content": "abort"}]
        ) as stream:
            for event in stream:
                events.append(event.type)
    assert not isinstance(exc.value, anthropic.APIStatusError)
    assert events and events[0] == "message_start"
    with pytest.raises(anthropic.APIConnectionError):
        claude(upstream).messages.create(
            model="stream-abort", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


def test_anthropic_stream_error_event(upstream: FakeUpstreamThread) -> None:
    events: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as exc:
        with claude(upstream).messages.stream(
            model="claude-stream-error", max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            for event in stream:
                events.append(event.type)
    assert events[0] == "message_start"
    assert exc.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_slow_model_delays_the_first_byte(upstream: FakeUpstreamThread) -> None:
    upstream.upstream.slow_delay = 0.3
    started = time.monotonic()
    claude(upstream).messages.create(model="claude-slow", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - started >= 0.3


# ---------------------------------------------------------------------------------------------------------------------
# OpenAI through the official SDK
# ---------------------------------------------------------------------------------------------------------------------


def test_openai_chat_completion(upstream: FakeUpstreamThread) -> None:
    raw = gpt(upstream).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello openai"}]
    )
    done = raw.parse()
    [seen] = upstream.requests
    assert seen.path == "/v1/chat/completions" and seen.headers["authorization"] == "Bearer sk-test-0123456789"
    assert done.object == "chat.completion" and done.id.startswith("chatcmpl-") and done.model == "gpt-4o-mini"
    assert done.choices[0].message.content == "echo: hello openai" and done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens == len(seen.body) // 4
    assert done.usage.completion_tokens == len("echo: hello openai") // 4
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert done.usage.prompt_tokens_details is not None and done.usage.prompt_tokens_details.cached_tokens == 0
    assert raw.headers["x-request-id"].startswith("req_")
    body = raw.http_response.content
    assert body.startswith(b'{\n  "id": "chatcmpl-') and body.endswith(b"}\n")


def test_openai_long_prompt_reports_cached_tokens(upstream: FakeUpstreamThread) -> None:
    done = gpt(upstream).chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": "rules " * 2000}, {"role": "user", "content": "hi"}],
    )
    assert done.usage is not None and done.usage.prompt_tokens >= 1024
    assert done.usage.prompt_tokens_details is not None
    assert done.usage.prompt_tokens_details.cached_tokens == (done.usage.prompt_tokens // 2) // 128 * 128 > 0


def test_openai_stream_without_include_usage(upstream: FakeUpstreamThread) -> None:
    chunks = list(
        gpt(upstream).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "stream quietly"}], stream=True
        )
    )
    assert chunks and all(c.choices and c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: stream quietly"
    assert chunks[-1].choices[0].finish_reason == "stop"
    status, headers, raw = post(upstream.base_url + "/v1/chat/completions", upstream.requests[-1].body, OPENAI_HEADERS)
    assert status == 200 and headers["content-type"] == "text/event-stream; charset=utf-8"
    assert b'"usage"' not in raw and b"event:" not in raw and raw.endswith(b"\n\ndata: [DONE]\n\n")


def test_openai_stream_with_include_usage(upstream: FakeUpstreamThread) -> None:
    chunks = list(
        gpt(upstream).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "stream"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    seen = upstream.requests[-1]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == len(seen.body) // 4
    assert all(c.usage is None and c.choices for c in chunks[:-1])
    _, _, raw = post(upstream.base_url + "/v1/chat/completions", seen.body, OPENAI_HEADERS)
    datas = [d for _, d in parse_sse(raw)]
    assert datas[-1] == b"[DONE]" and b'"choices":[],"usage":{' in datas[-2]
    assert all(b'"usage":null' in d for d in datas[:-2])


@pytest.mark.parametrize(
    ("tool_choice", "prompt", "finish"),
    [
        (None, "please use a tool", "tool_calls"),
        ("required", "anything", "tool_calls"),
        ({"type": "function", "function": {"name": "lookup"}}, "anything", "stop"),  # OpenAI's own quirk
    ],
)
def test_openai_tool_calls(upstream: FakeUpstreamThread, tool_choice: Any, prompt: str, finish: str) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
            },
        }
    ]
    extra = {} if tool_choice is None else {"tool_choice": tool_choice}
    done = gpt(upstream).chat.completions.create(
        model="gpt-4o-mini",
        tools=tools,  # type: ignore[arg-type]
        messages=[{"role": "user", "content": prompt}],
        **extra,
    )
    choice = done.choices[0]
    assert choice.finish_reason == finish and choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"word": prompt}


def test_openai_tool_calls_stream(upstream: FakeUpstreamThread) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
            },
        }
    ]
    chunks = list(
        gpt(upstream).chat.completions.create(
            model="gpt-4o-mini",
            stream=True,
            tools=tools,
            stream_options={"include_usage": True},  # type: ignore[arg-type]
            messages=[{"role": "user", "content": "use a tool please"}],
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [tc.function.name for tc in calls if tc.function and tc.function.name] == ["lookup"]
    assert calls[0].id and calls[0].id.startswith("call_")
    arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(arguments) == {"word": "use a tool please"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"] and chunks[-1].usage is not None


def test_openai_embeddings(upstream: FakeUpstreamThread) -> None:
    client = gpt(upstream)
    res = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert upstream.requests[-1].json()["encoding_format"] == "base64"  # the SDK asks for base64 unless told
    assert [d.index for d in res.data] == [0, 1] and len(res.data[0].embedding) == 1536
    assert res.data[0].embedding == pytest.approx(embedding_vector("a", 1536), abs=1e-6)
    assert res.model == "text-embedding-3-small" and res.usage.prompt_tokens == res.usage.total_tokens == 2
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="hello world", dimensions=8, encoding_format="float"
    )
    assert floats.data[0].embedding == embedding_vector("hello world", 8)
    status, _, raw = post(
        upstream.base_url + "/v1/embeddings",
        {"model": "text-embedding-3-large", "input": "x", "encoding_format": "base64"},
        OPENAI_HEADERS,
    )
    encoded = json.loads(raw)["data"][0]["embedding"]
    assert status == 200 and len(struct.unpack(f"<{3072}f", base64.b64decode(encoded))) == 3072


def test_openai_models(upstream: FakeUpstreamThread) -> None:
    ids = [m.id for m in gpt(upstream).models.list()]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [
        ("gpt-error-429", openai.RateLimitError, 429),
        ("gpt-error-500", openai.InternalServerError, 500),
        ("gpt-error-529", openai.InternalServerError, 503),
    ],
)
def test_openai_model_scripted_errors(
    upstream: FakeUpstreamThread, model: str, error: type[openai.APIStatusError], status: int
) -> None:
    with pytest.raises(error) as exc:
        gpt(upstream).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == status
    assert isinstance(exc.value.body, dict) and set(exc.value.body) == {"message", "type", "param", "code"}
    if status == 429:
        assert exc.value.code == "rate_limit_exceeded" and exc.value.response.headers["retry-after"] == "1"


def test_openai_auth_errors(upstream: FakeUpstreamThread) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    status, _, raw = post(upstream.base_url + "/v1/chat/completions", body, {})
    assert status == 401 and raw == (FIXTURES / "openai" / "error_missing_api_key.json").read_bytes()
    upstream.upstream.valid_keys = {"sk-good"}
    with pytest.raises(openai.AuthenticationError) as exc:
        gpt(upstream).chat.completions.create(**body)  # type: ignore[call-overload]
    assert exc.value.code == "invalid_api_key" and "sk-test-0123456789" not in exc.value.message


def test_openai_unknown_route(upstream: FakeUpstreamThread) -> None:
    status, _, raw = post(upstream.base_url + "/v1/completionz", {"model": "m"}, OPENAI_HEADERS)
    assert status == 404 and json.loads(raw)["error"]["message"] == "Invalid URL (POST /v1/completionz)"


def test_openai_stream_abort_and_error(upstream: FakeUpstreamThread) -> None:
    seen: list[str | None] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in gpt(upstream).chat.completions.create(
            model="gpt-stream-abort", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            seen.append(chunk.choices[0].delta.content)
    assert seen
    with pytest.raises(openai.APIError) as exc:
        for _ in gpt(upstream).chat.completions.create(
            model="gpt-stream-error", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass
    assert exc.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }


# ---------------------------------------------------------------------------------------------------------------------
# The asyncio API and the standalone process
# ---------------------------------------------------------------------------------------------------------------------


async def test_async_start_and_close() -> None:
    fake = FakeUpstream()
    url = await fake.start()
    try:
        assert url == fake.base_url and url.startswith("http://127.0.0.1:")
        a = anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0)
        msg = await a.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "async"}])
        assert msg.content[0].text == "echo: async"  # type: ignore[union-attr]
        o = openai.AsyncOpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        stream = await o.chat.completions.create(
            model="g", messages=[{"role": "user", "content": "async"}], stream=True
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "echo: async"
        assert [r.path for r in fake.requests] == ["/v1/messages", "/v1/chat/completions"]
        fake.reset()
        assert fake.requests == []
    finally:
        await fake.close()


def test_standalone_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.upstream", "--port", "0"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:")
        status, _, raw = post(
            url + "/v1/messages",
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "standalone"}]},
            ANTHROPIC_HEADERS,
        )
        assert status == 200 and json.loads(raw)["content"][0]["text"] == "echo: standalone"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
