"""Anthropic Messages codec against recorded payloads (tests/fixtures/anthropic, claude_code)."""

from __future__ import annotations

import pytest

from sluice.core.canonical import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Failure,
    Finish,
    Image,
    Message,
    Reasoning,
    Start,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
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

codec = codec_for(WireFormat.ANTHROPIC_MESSAGES)
WIRE = "anthropic_messages"


def test_claude_code_request_decodes_and_encodes_back_unchanged() -> None:
    doc = fixture("claude_code/messages_request.json")
    request = codec.decode_request(doc)
    assert request.model == "claude-sonnet-4-6"
    assert request.stream is True and request.max_tokens == 32000
    assert [t.cache for t in request.system] == [False, True, True]
    assert len(request.tools) == 24 and all(t.native is None for t in request.tools)
    assert request.tools[1].name == "Bash"
    assert request.reasoning == Reasoning(effort="high")
    assert request.user is not None and "device_id" in request.user
    assert request.extra[WIRE]["context_management"] == doc["context_management"]
    assert request.messages[0].parts[-1] == Text("say hi", cache=True)
    assert codec.encode_request(request) == doc


FULL_REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 2048,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two images.", "signature": "EqQBCgIYAhIM"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va"},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat"}},
                {"type": "tool_use", "id": "toolu_2", "name": "lookup", "input": {"q": "png"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "not found"}],
                    "is_error": True,
                },
                {"type": "text", "text": "Go on."},
            ],
        },
    ],
    "tools": [
        {"name": "lookup", "description": "Look up", "input_schema": {"type": "object", "properties": {}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "temperature": 1,
    "top_k": 40,
    "stop_sequences": ["END"],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
}


def test_full_request_decodes_to_canonical() -> None:
    r = codec.decode_request(FULL_REQUEST)
    assert r.system == [Text("Be brief.")]
    assert r.messages == [
        Message(
            "user",
            [
                Text("What is in these?"),
                Image("image/png", data="iVBORw0KGgo="),
                Image("", url="https://example.com/cat.jpg"),
            ],
        ),
        Message(
            "assistant",
            [
                Thinking("Two images.", signature="EqQBCgIYAhIM", origin=WIRE),
                Thinking("EmwKAhgBEgy3va", redacted=True, origin=WIRE),
                ToolCall("toolu_1", "lookup", '{"q":"cat"}'),
                ToolCall("toolu_2", "lookup", '{"q":"png"}'),
            ],
        ),
        Message(
            "user",
            [
                ToolResult("toolu_1", [Text("a cat")]),
                ToolResult("toolu_2", [Text("not found")], is_error=True),
                Text("Go on."),
            ],
        ),
    ]
    assert r.tools[0] == Tool("lookup", "Look up", {"type": "object", "properties": {}})
    assert r.tools[1].native == FULL_REQUEST["tools"][1] and r.tools[1].origin == WIRE  # type: ignore[index]
    assert r.tool_choice == ToolChoice("auto", parallel=False)
    assert (r.top_k, r.stop, r.max_tokens) == (40, ["END"], 2048)
    assert r.reasoning == Reasoning(budget_tokens=1024)
    assert r.response_format == {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"}}}


def test_full_request_encodes_back() -> None:
    out = codec.encode_request(codec.decode_request(FULL_REQUEST))
    expected = dict(FULL_REQUEST)
    # a string tool_result content comes back as a text block list: the same thing to the API
    expected["messages"] = [dict(m) for m in FULL_REQUEST["messages"]]  # type: ignore[union-attr]
    third = expected["messages"][2]
    third["content"] = [dict(b) for b in third["content"]]
    third["content"][0]["content"] = [{"type": "text", "text": "a cat"}]
    # Thinking refuses top_k ("Thinking isn't compatible with temperature or top_k modifications"):
    # the sampling hint gives way to the thinking the request asks for.
    del expected["top_k"]
    assert out == expected


def test_thinking_of_another_vendor_is_dropped_and_mid_system_is_folded() -> None:
    request = ChatRequest(
        model="m",
        max_tokens=100,
        messages=[
            Message("user", [Text("hi")]),
            Message("assistant", [Thinking("hmm", signature="x", origin="gemini"), Text("hello")]),
            Message("system", [Text("Answer in French.")]),
            Message("user", [Text("bye")]),
        ],
    )
    body = codec.encode_request(request)
    assert body["messages"][1] == {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "text", "text": "<system>\nAnswer in French.\n</system>"}],
    }


def test_untranslatable_things_raise() -> None:
    with pytest.raises(Untranslatable, match="server_tool_use"):
        codec.decode_request(
            {
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}],
            }
        )
    foreign = Tool("shell", native={"type": "local_shell"}, origin="openai_responses")
    with pytest.raises(Untranslatable, match="local_shell"):
        codec.encode_request(ChatRequest(model="m", messages=[], tools=[foreign]))
    bad_args = Message("assistant", [ToolCall("c1", "f", "{not json")])
    with pytest.raises(Untranslatable, match="not valid JSON"):
        codec.encode_request(ChatRequest(model="m", messages=[bad_args]))
    with pytest.raises(Untranslatable, match="json_object"):
        codec.encode_request(ChatRequest(model="m", messages=[], response_format={"type": "json_object"}))


def test_effort_only_reasoning_becomes_a_budget_below_max_tokens() -> None:
    body = codec.encode_request(ChatRequest(model="m", messages=[], max_tokens=4000, reasoning=Reasoning("high")))
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2976}
    assert "output_config" not in body
    small = codec.encode_request(ChatRequest(model="m", messages=[], max_tokens=1500, reasoning=Reasoning("high")))
    assert "thinking" not in small


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "message.json",
            ChatResponse(
                "msg_01XFDUDYJgAACzvnptvVoYEL",
                "claude-sonnet-4-5-20250929",
                [Text("Hello! It's nice to meet you. How can I help you today?")],
                "end_turn",
                usage=Usage(12, 18, 20452, 1843),
            ),
        ),
        (
            "message_tool_use.json",
            ChatResponse(
                "msg_01Aq9w938a90dw8q7dRmJ2kD",
                "claude-sonnet-4-5-20250929",
                [
                    Text("I'll check the current weather in San Francisco for you."),
                    ToolCall(
                        "toolu_01D7FLrfh4GYq7yT1ULFeyMV",
                        "get_weather",
                        '{"location":"San Francisco, CA","unit":"celsius"}',
                    ),
                ],
                "tool_use",
                usage=Usage(3, 89, 18840, 412),
            ),
        ),
    ],
)
def test_recorded_responses(name: str, expected: ChatResponse) -> None:
    doc = fixture(f"anthropic/{name}")
    assert codec.decode_response(doc) == expected
    out = codec.encode_response(expected)
    assert out["content"] == [{k: v for k, v in b.items() if k != "caller"} for b in doc["content"]]
    for key in ("id", "model", "stop_reason", "stop_sequence", "type", "role"):
        assert out[key] == doc[key]
    assert out["usage"] == {k: doc["usage"][k] for k in out["usage"]}


@pytest.mark.parametrize(
    ("name", "status", "etype"),
    [
        ("error_overloaded.json", 529, "overloaded_error"),
        ("error_rate_limit.json", 429, "rate_limit_error"),
        ("error_invalid_request.json", 400, "invalid_request_error"),
        ("error_authentication.json", 401, "authentication_error"),
    ],
)
def test_recorded_errors(name: str, status: int, etype: str) -> None:
    failure = codec.decode_error(status, raw(f"anthropic/{name}"))
    assert (failure.status, failure.type) == (status, etype)
    assert failure.message == fixture(f"anthropic/{name}")["error"]["message"]


def test_error_body_that_is_not_json() -> None:
    assert codec.decode_error(502, b"<html>bad gateway</html>") == Failure(502, "<html>bad gateway</html>")


TOOL_STREAM = [
    Start("msg_014p7gG3wDgGV9EUtLvnow3U", "claude-sonnet-4-5-20250929", Usage(3, 1, 18840, 412)),
    BlockStart(0, "text"),
    TextDelta(0, "I'll check the current"),
    TextDelta(0, " weather in San Francisco for you."),
    BlockStop(0),
    BlockStart(1, "tool_call", call_id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather"),
    ToolArgsDelta(1, '{"location":'),
    ToolArgsDelta(1, ' "San Francisc'),
    ToolArgsDelta(1, 'o, CA"'),
    ToolArgsDelta(1, ', "unit": "celsius"}'),
    BlockStop(1),
    Finish("tool_use", Usage(3, 89, 18840, 412)),
]


@pytest.mark.parametrize("size", [1, 3, 64, 1 << 20])
def test_recorded_tool_stream_decodes_at_any_chunk_size(size: int) -> None:
    assert decode_stream(codec, raw("anthropic/message_tool_use_stream.sse"), size) == TOOL_STREAM


def test_stream_encodes_to_the_recorded_event_sequence() -> None:
    encoded = sse_payloads(encode_stream(codec, TOOL_STREAM))
    # ping and the empty first input_json_delta carry nothing; they are not re-emitted
    recorded = [
        (n, d)
        for n, d in sse_payloads(raw("anthropic/message_tool_use_stream.sse"))
        if n != "ping" and d.get("delta", {}).get("partial_json") != ""
    ]
    assert [n for n, _ in encoded] == [n for n, _ in recorded]
    for (_, got), (_, want) in zip(encoded, recorded, strict=True):
        if got["type"] == "content_block_delta":
            assert got == want
    assert decode_stream(codec, encode_stream(codec, TOOL_STREAM)) == TOOL_STREAM


def test_thinking_stream_round_trips_and_foreign_thinking_is_dropped() -> None:
    events = [
        Start("m1", "claude"),
        BlockStart(0, "thinking", origin=WIRE),
        ThinkingDelta(0, text="Let me think"),
        ThinkingDelta(0, signature="sig=="),
        BlockStop(0),
        BlockStart(1, "thinking", redacted=True, origin=WIRE),
        ThinkingDelta(1, text="opaque"),
        BlockStop(1),
        BlockStart(2, "text"),
        TextDelta(2, "hi"),
        BlockStop(2),
        Finish("end_turn", Usage(1, 2)),
    ]
    assert decode_stream(codec, encode_stream(codec, events)) == events
    foreign = [Start("m1", "x"), BlockStart(0, "thinking", origin="openai_responses"), ThinkingDelta(0, "t")]
    foreign += [BlockStop(0), BlockStart(1, "text"), TextDelta(1, "hi"), BlockStop(1), Finish("end_turn", Usage())]
    out = decode_stream(codec, encode_stream(codec, foreign))
    assert out == [
        Start("m1", "x"),
        BlockStart(0, "text"),
        TextDelta(0, "hi"),
        BlockStop(0),
        Finish("end_turn", Usage()),
    ]


def test_recorded_error_stream_and_early_end() -> None:
    assert decode_stream(codec, raw("anthropic/error_stream_overloaded.sse")) == [
        Failure(529, "Overloaded", "overloaded_error")
    ]
    cut = raw("anthropic/message_stream.sse").split(b"event: content_block_stop")[0]
    events = decode_stream(codec, cut)
    assert isinstance(events[-1], Failure) and events[-1].status == 502


def test_effort_from_another_format_gives_way_to_what_thinking_refuses() -> None:
    request = ChatRequest(model="m", messages=[], max_tokens=30000, reasoning=Reasoning("low"), temperature=0.2)
    assert "thinking" not in codec.encode_request(request)
    request.temperature = None
    assert codec.encode_request(request)["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_a_broken_event_ends_the_stream_with_a_failure() -> None:
    events = decode_stream(
        codec, b'event: message_start\ndata: {"type":"message_start","message":{}}\n\ndata: {oops\n\n'
    )
    assert isinstance(events[-1], Failure) and events[-1].status == 502
