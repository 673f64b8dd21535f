"""The Bedrock Converse codec: requests, answers and streams, in both directions."""

from __future__ import annotations

from typing import Any

import orjson
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
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
    ToolResult,
    Untranslatable,
)
from sluice.core.types import Usage, WireFormat
from sluice.formats.bedrock_converse.codec import CODEC
from sluice.formats.codec import Codec
from tests.fakes import aws_wire

REQUEST: dict[str, Any] = {
    "messages": [
        {
            "role": "user",
            "content": [
                {"text": "look at this"},
                {"cachePoint": {"type": "default"}},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                {"toolUse": {"toolUseId": "tu_1", "name": "search", "input": {"q": "sluice"}}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "tu_1",
                        "content": [{"text": "found"}, {"json": {"n": 1}}],
                        "status": "error",
                    }
                }
            ],
        },
    ],
    "system": [{"text": "be brief"}, {"cachePoint": {"type": "default"}}],
    "inferenceConfig": {"maxTokens": 256, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
    "toolConfig": {
        "tools": [
            {"toolSpec": {"name": "search", "description": "Search", "inputSchema": {"json": {"type": "object"}}}}
        ],
        "toolChoice": {"tool": {"name": "search"}},
    },
    "additionalModelRequestFields": {"top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 2048}},
    "guardrailConfig": {"guardrailIdentifier": "g1", "guardrailVersion": "1"},
}


def test_codec_keeps_the_protocol() -> None:
    codec: Codec = CODEC
    assert codec.wire is WireFormat.BEDROCK_CONVERSE


def test_request_decodes_to_canonical() -> None:
    req = CODEC.decode_request(REQUEST, model="mistral.mistral-large-2407-v1:0")
    assert req.model == "mistral.mistral-large-2407-v1:0"
    assert req.system == [Text("be brief", cache=True)]
    first, second, third = req.messages
    assert first.parts[0] == Text("look at this", cache=True)
    assert first.parts[1] == Image("image/png", data="iVBORw0KGgo=")
    assert second.parts[0] == Thinking("hmm", "sig", origin="bedrock_converse")
    assert second.parts[1] == ToolCall("tu_1", "search", '{"q":"sluice"}')
    assert third.parts[0] == ToolResult("tu_1", [Text("found"), Text('{"n":1}')], is_error=True)
    assert (req.max_tokens, req.temperature, req.top_p, req.top_k, req.stop) == (256, 0.5, 0.9, 40, ["END"])
    assert req.reasoning == Reasoning(budget_tokens=2048)
    assert req.tools == [Tool("search", "Search", {"type": "object"})]
    assert req.tool_choice == ToolChoice("tool", "search")
    assert req.extra["bedrock_converse"] == {"guardrailConfig": {"guardrailIdentifier": "g1", "guardrailVersion": "1"}}


def test_request_round_trips() -> None:
    again = CODEC.encode_request(CODEC.decode_request(REQUEST, model="m"))
    expected = {**REQUEST}
    # The tool result's JSON block comes back as its text, which Converse accepts alike.
    expected["messages"] = orjson.loads(
        orjson.dumps(REQUEST["messages"]).replace(b'{"json":{"n":1}}', b'{"text":"{\\"n\\":1}"}')
    )
    assert again == expected


def test_canonical_from_another_format_encodes_for_converse() -> None:
    req = ChatRequest(
        model="claude-x",
        messages=[
            Message("user", [Text("hi")]),
            Message("assistant", [Thinking("t", "anthropic-sig", origin="anthropic_messages"), Text("hello")]),
        ],
        tools=[Tool("f", "", {"type": "object", "properties": {}})],
        tool_choice=ToolChoice("any"),
        reasoning=Reasoning(effort="low"),
        response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": {"type": "object"}}},
        user="u-1",
    )
    doc = CODEC.encode_request(req)
    # Another vendor's signed reasoning is dropped, never forwarded.
    assert doc["messages"][1] == {"role": "assistant", "content": [{"text": "hello"}]}
    assert doc["toolConfig"]["toolChoice"] == {"any": {}}
    assert doc["toolConfig"]["tools"][0]["toolSpec"]["description"] == "f"
    assert doc["outputConfig"]["effort"] == "low"
    assert doc["outputConfig"]["textFormat"]["structure"]["jsonSchema"] == {
        "schema": '{"type":"object"}',
        "name": "out",
    }
    assert doc["requestMetadata"] == {"user": "u-1"}


def test_what_converse_cannot_carry_is_refused() -> None:
    with pytest.raises(Untranslatable, match="image url"):
        CODEC.encode_request(ChatRequest("m", [Message("user", [Image("image/png", url="https://x/y.png")])]))
    # A system turn inside the conversation is folded into a user turn (test_codec_fidelity), not refused.
    calls = [Message("assistant", [ToolCall("1", "f", "{}")]), Message("user", [ToolResult("1", [Text("r")])])]
    with pytest.raises(Untranslatable, match="tool_choice none"):
        CODEC.encode_request(ChatRequest("m", calls, tools=[Tool("f")], tool_choice=ToolChoice("none")))


def test_response_both_ways() -> None:
    doc = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [{"text": "hi"}, {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"a": 1}}}],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15, "cacheReadInputTokens": 3},
        "metrics": {"latencyMs": 100},
    }
    response = CODEC.decode_response(doc)
    assert response.content == [Text("hi"), ToolCall("t1", "f", '{"a":1}')]
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(10, 5, 3, 0)
    again = CODEC.encode_response(response)
    assert again["output"] == doc["output"] and again["stopReason"] == "tool_use"
    assert again["usage"] == {"inputTokens": 10, "outputTokens": 5, "totalTokens": 18, "cacheReadInputTokens": 3}
    refused = CODEC.encode_response(ChatResponse("i", "m", [], stop_reason="refusal"))
    assert refused["stopReason"] == "content_filtered"
    assert CODEC.decode_response({**doc, "stopReason": "guardrail_intervened"}).stop_reason == "refusal"


def test_errors() -> None:
    failure = CODEC.decode_error(429, b'{"message":"Too many requests"}')
    assert failure == Failure(429, "Too many requests", "")
    typed = CODEC.decode_error(400, b'{"__type":"com.amazon.coral#ValidationException","message":"bad"}')
    assert typed.type == "ValidationException"


def _stream_bytes() -> bytes:
    frames = [
        aws_wire.event("messageStart", {"role": "assistant"}),
        aws_wire.event("contentBlockDelta", {"delta": {"text": "Hel"}, "contentBlockIndex": 0}),
        aws_wire.event("contentBlockDelta", {"delta": {"text": "lo"}, "contentBlockIndex": 0}),
        aws_wire.event("contentBlockStop", {"contentBlockIndex": 0}),
        aws_wire.event(
            "contentBlockStart",
            {"start": {"toolUse": {"toolUseId": "t1", "name": "f"}}, "contentBlockIndex": 1},
        ),
        aws_wire.event("contentBlockDelta", {"delta": {"toolUse": {"input": '{"a":'}}, "contentBlockIndex": 1}),
        aws_wire.event("contentBlockDelta", {"delta": {"toolUse": {"input": "1}"}}, "contentBlockIndex": 1}),
        aws_wire.event("contentBlockStop", {"contentBlockIndex": 1}),
        aws_wire.event("messageStop", {"stopReason": "tool_use"}),
        aws_wire.event("metadata", {"usage": {"inputTokens": 7, "outputTokens": 9, "totalTokens": 16}, "metrics": {}}),
    ]
    return b"".join(frames)


EXPECTED = [
    Start("", ""),
    BlockStart(0, "text"),
    TextDelta(0, "Hel"),
    TextDelta(0, "lo"),
    BlockStop(0),
    BlockStart(1, "tool_call", call_id="t1", name="f"),
    ToolArgsDelta(1, '{"a":'),
    ToolArgsDelta(1, "1}"),
    BlockStop(1),
    Finish("tool_use", Usage(7, 9)),
]


def test_stream_decodes_across_any_chunking() -> None:
    data = _stream_bytes()
    decoder = CODEC.stream_decoder()
    events = [e for i in range(0, len(data), 11) for e in decoder.feed(data[i : i + 11])]
    assert events + decoder.close() == EXPECTED


def test_stream_encoder_output_decodes_back() -> None:
    encoder = CODEC.stream_encoder(ChatRequest("m", []))
    assert encoder.content_type == "application/vnd.amazon.eventstream"
    data = b"".join(encoder.encode(e) for e in EXPECTED) + encoder.close()
    decoder = CODEC.stream_decoder()
    assert decoder.feed(data) == EXPECTED
    failure = CODEC.stream_decoder().feed(encoder.encode(Failure(429, "slow down")))
    assert failure == [Failure(429, "slow down", "throttlingException")]


def test_stream_without_metadata_still_finishes() -> None:
    decoder = CODEC.stream_decoder()
    decoder.feed(aws_wire.event("messageStop", {"stopReason": "max_tokens"}))
    assert decoder.close() == [Finish("max_tokens", Usage())]
