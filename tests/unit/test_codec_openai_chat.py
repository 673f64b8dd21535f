"""OpenAI Chat Completions codec against recorded payloads (tests/fixtures/openai)."""

from __future__ import annotations

import pytest

from sluice.core.canonical import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Document,
    Failure,
    Finish,
    Image,
    Message,
    Reasoning,
    Start,
    Text,
    TextDelta,
    Thinking,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
    ToolResult,
    Untranslatable,
)
from sluice.core.types import Usage, WireFormat
from sluice.formats.codecs import codec_for
from tests.unit.codec_helpers import decode_stream, encode_stream, fixture, raw, sse_payloads

codec = codec_for(WireFormat.OPENAI_CHAT)

FULL_REQUEST = {
    "model": "llama-3.3-70b",  # a compatible vendor's model: OpenAI's gpt-4o refuses reasoning_effort
    "messages": [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
                {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "one"},
        {"role": "tool", "tool_call_id": "call_2", "content": "two"},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "ok"},
        {"role": "system", "content": "Now answer in French."},
        {"role": "user", "content": "again"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "F", "parameters": {"type": "object"}}}],
    "tool_choice": "required",
    "parallel_tool_calls": True,
    "max_completion_tokens": 500,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["END"],
    "reasoning_effort": "low",
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    "user": "u-1",
    "seed": 7,
}

EXPECTED_MESSAGES = [
    Message(
        "user",
        [
            Text("Compare"),
            Image("image/png", data="iVBORw0KGgo="),
            Image("", url="https://example.com/cat.jpg"),
            Document("application/pdf", data="JVBERi0=", name="a.pdf"),
        ],
    ),
    Message("assistant", [ToolCall("call_1", "f", '{"a": 1}'), ToolCall("call_2", "g", "{}")]),
    Message("user", [ToolResult("call_1", [Text("one")]), ToolResult("call_2", [Text("two")]), Text("thanks")]),
    Message("assistant", [Text("ok")]),
    Message("system", [Text("Now answer in French.")]),
    Message("user", [Text("again")]),
]


def test_full_request_decodes_to_canonical() -> None:
    r = codec.decode_request(FULL_REQUEST)
    assert r.system == [Text("Be brief.")]
    assert r.messages == EXPECTED_MESSAGES
    assert r.tools == [Tool("f", "F", {"type": "object"})]
    assert r.tool_choice == ToolChoice("any", parallel=True)
    assert (r.max_tokens, r.temperature, r.top_p, r.stop, r.user) == (500, 0.2, 0.9, ["END"], "u-1")
    assert r.reasoning == Reasoning(effort="low")
    assert r.response_format == FULL_REQUEST["response_format"]
    assert r.extra == {"openai_chat": {"seed": 7}}


def test_full_request_encodes_back() -> None:
    out = codec.encode_request(codec.decode_request(FULL_REQUEST))
    expected = dict(FULL_REQUEST)
    expected["messages"] = [{"role": "system", "content": "Be brief."}, *FULL_REQUEST["messages"][1:]]  # type: ignore[index]
    assert out == expected


def test_tool_arguments_keep_their_exact_text() -> None:
    out = codec.encode_request(codec.decode_request(FULL_REQUEST))
    assert out["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'


def test_images_returned_by_a_tool_follow_the_tool_message() -> None:
    request = ChatRequest(
        model="m",
        messages=[Message("user", [ToolResult("c1", [Text("shot"), Image("image/png", data="AA==")], is_error=True)])],
    )
    assert codec.encode_request(request)["messages"] == [
        {"role": "tool", "tool_call_id": "c1", "content": "shot"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]},
    ]


def test_thinking_is_not_sent_and_native_tools_of_others_raise() -> None:
    request = ChatRequest(
        model="m",
        messages=[Message("assistant", [Thinking("t", "sig", origin="anthropic_messages"), Text("a")])],
    )
    assert codec.encode_request(request)["messages"] == [{"role": "assistant", "content": "a"}]
    with pytest.raises(Untranslatable, match="web_search"):
        codec.encode_request(
            ChatRequest(
                model="m",
                messages=[],
                tools=[Tool("web_search", native={"type": "web_search_20250305"}, origin="anthropic_messages")],
            )
        )
    with pytest.raises(Untranslatable, match="input_audio"):
        codec.decode_request({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]})


def test_stream_request_asks_for_usage() -> None:
    body = codec.encode_request(ChatRequest(model="m", messages=[], stream=True))
    assert body["stream_options"] == {"include_usage": True}
    caller = codec.decode_request({"model": "m", "messages": [], "stream": True})
    assert caller.extra["openai_chat"]["stream_options"] == {"include_usage": False}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "chat_completion.json",
            ChatResponse(
                "chatcmpl-CBx7qLzP4nVtY2eKjW9sHd0aRf3Gm",
                "gpt-4o-mini-2024-07-18",
                [Text("Hello! How can I assist you today?")],
                "end_turn",
                usage=Usage(86, 10, 1920, 0),
            ),
        ),
        (
            "chat_completion_tool_calls.json",
            ChatResponse(
                "chatcmpl-CBxA4kRzT1uWm8YhN2pQe5LvGd7Fc",
                "gpt-4o-mini-2024-07-18",
                [ToolCall("call_Ie3nFh2KzS0bAhoYk9QwXg7V", "get_weather", '{"location":"Paris, France"}')],
                "tool_use",
                usage=Usage(82, 17, 0, 0),
            ),
        ),
    ],
)
def test_recorded_responses(name: str, expected: ChatResponse) -> None:
    doc = fixture(f"openai/{name}")
    assert codec.decode_response(doc) == expected
    out = codec.encode_response(expected)
    want = doc["choices"][0]["message"]
    got = out["choices"][0]["message"]
    assert (got["content"], got.get("tool_calls")) == (want["content"], want.get("tool_calls"))
    assert out["choices"][0]["finish_reason"] == doc["choices"][0]["finish_reason"]
    assert {k: out["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == {
        k: doc["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    assert (
        out["usage"]["prompt_tokens_details"]["cached_tokens"] == doc["usage"]["prompt_tokens_details"]["cached_tokens"]
    )


def test_cache_writes_count_in_prompt_tokens() -> None:
    out = codec.encode_response(ChatResponse("r", "m", [Text("x")], usage=Usage(10, 5, 100, 7)))
    assert out["usage"]["prompt_tokens"] == 117
    assert out["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}


@pytest.mark.parametrize(
    ("name", "status"),
    [("error_rate_limit.json", 429), ("error_invalid_api_key.json", 401), ("error_server.json", 500)],
)
def test_recorded_errors(name: str, status: int) -> None:
    doc = fixture(f"openai/{name}")
    failure = codec.decode_error(status, raw(f"openai/{name}"))
    assert failure == Failure(status, doc["error"]["message"], doc["error"]["type"] or doc["error"]["code"])


TOOL_STREAM = [
    Start("chatcmpl-CBxAq0VnG5rTz3MhK8wYb2LdPe6Js", "gpt-4o-mini-2024-07-18"),
    BlockStart(0, "tool_call", call_id="call_pBq8Zk1Ydr4Tn6WvX2sLm9Hc", name="get_weather"),
    ToolArgsDelta(0, '{"'),
    ToolArgsDelta(0, "location"),
    ToolArgsDelta(0, '":"'),
    ToolArgsDelta(0, "Paris"),
    ToolArgsDelta(0, ","),
    ToolArgsDelta(0, " France"),
    ToolArgsDelta(0, '"}'),
    BlockStop(0),
    Finish("tool_use", Usage(82, 17)),
]


@pytest.mark.parametrize("size", [1, 5, 77, 1 << 20])
def test_recorded_tool_stream_decodes_at_any_chunk_size(size: int) -> None:
    assert decode_stream(codec, raw("openai/chat_completion_tool_calls_stream.sse"), size) == TOOL_STREAM


def test_recorded_text_stream() -> None:
    events = decode_stream(codec, raw("openai/chat_completion_stream.sse"), 9)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "Hello! How can I assist you today?"
    assert isinstance(events[0], Start) and events[1] == BlockStart(0, "text")
    assert events[-2:] == [BlockStop(0), Finish("end_turn", events[-1].usage)]  # type: ignore[union-attr]


def test_stream_encodes_like_the_recording() -> None:
    data = encode_stream(codec, TOOL_STREAM)
    assert data.endswith(b"data: [DONE]\n\n")
    got = sse_payloads(data)
    want = sse_payloads(raw("openai/chat_completion_tool_calls_stream.sse"))
    assert len(got) == len(want)
    for g, w in zip(got[1:-2], want[1:-2], strict=True):
        assert g[1]["choices"][0]["delta"] == w[1]["choices"][0]["delta"]
        assert g[1]["choices"][0]["finish_reason"] == w[1]["choices"][0]["finish_reason"]
    assert got[-2][1]["usage"]["prompt_tokens"] == 82 and got[-2][1]["choices"] == []
    assert decode_stream(codec, data) == TOOL_STREAM


def test_stream_without_usage_when_the_caller_did_not_ask() -> None:
    request = codec.decode_request({"model": "m", "messages": [], "stream": True})
    data = encode_stream(codec, TOOL_STREAM, request)
    assert b'"usage"' not in data and data.endswith(b"data: [DONE]\n\n")


def test_recorded_error_stream_and_early_end() -> None:
    [failure] = decode_stream(codec, raw("openai/error_stream.sse"))
    assert isinstance(failure, Failure) and failure.status == 500 and failure.type == "server_error"
    cut = raw("openai/chat_completion_stream.sse")[:900]
    assert isinstance(decode_stream(codec, cut)[-1], Failure)


def test_a_prompt_filter_chunk_before_the_stream_is_skipped() -> None:
    azure = b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}\n\n'
    events = decode_stream(codec, azure + raw("openai/chat_completion_tool_calls_stream.sse"))
    assert events == TOOL_STREAM
