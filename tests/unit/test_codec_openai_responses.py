"""OpenAI Responses API codec against payloads in the documented shapes (tests/fixtures/responses)."""

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
from sluice.formats.codec_support import unseal
from sluice.formats.codecs import codec_for
from tests.unit.codec_helpers import decode_stream, encode_stream, fixture, raw, sse_payloads

codec = codec_for(WireFormat.OPENAI_RESPONSES)
WIRE = "openai_responses"


def test_codex_request_decodes_to_canonical() -> None:
    doc = fixture("responses/codex_request.json")
    r = codec.decode_request(doc)
    assert r.system == [
        Text(doc["instructions"]),
        Text("<permissions instructions>approval_policy=on-request</permissions instructions>"),
    ]
    assert r.messages == [
        Message("user", [Text("<environment_context>\n  <cwd>/work/app</cwd>\n</environment_context>")]),
        Message("user", [Text("list the files")]),
        Message(
            "assistant",
            [
                Thinking("**Listing files**", signature="gAAAAABo-encrypted-1", origin=WIRE),
                ToolCall("call_a1", "shell", '{"command":["ls","-la"]}'),
            ],
        ),
        Message("user", [ToolResult("call_a1", [Text("total 0\nREADME.md")])]),
        Message("assistant", [Text("There is one file: README.md.")]),
        Message("system", [Text("The user switched approval mode.")]),
        Message("user", [Text("show it"), Image("image/png", data="iVBORw0KGgo=")]),
    ]
    assert r.tools[0] == Tool("shell", "Runs a shell command and returns its output.", doc["tools"][0]["parameters"])
    native = [t for t in doc["tools"][1:] if t["type"] != "custom"]
    assert [(t.native, t.origin) for t in r.tools[1:] if t.freeform is None] == [(t, WIRE) for t in native]
    [patch] = [t for t in r.tools if t.freeform is not None]  # custom tools translate (test_codec_responses_tools)
    assert patch.name == "apply_patch" and patch.freeform == {
        "type": "grammar",
        "syntax": "lark",
        "definition": "start: patch",
    }
    assert r.tool_choice == ToolChoice("auto", parallel=False)
    assert r.reasoning == Reasoning(effort="medium", summary=True)
    assert r.stream is True
    assert r.extra == {
        WIRE: {
            "store": False,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        }
    }


def test_codex_request_encodes_back() -> None:
    doc = fixture("responses/codex_request.json")
    out = codec.encode_request(codec.decode_request(doc))
    expected = dict(doc)
    expected["input"] = [dict(i) for i in doc["input"]]
    del expected["input"][3]["content"]  # a null field of the reasoning item is not repeated
    assert out == expected


def test_codex_request_to_another_format_refuses_its_native_tools() -> None:
    request = codec.decode_request(fixture("responses/codex_request.json"))
    with pytest.raises(Untranslatable, match="local_shell"):
        codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    request.tools = request.tools[:1]
    body = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    # the encrypted reasoning stays behind; the developer message mid-way is folded into a user turn
    assert body["messages"][2]["content"][0]["type"] == "tool_use"
    assert body["messages"][5]["content"][0]["text"].startswith("<system>\nThe user switched")


def test_stored_history_is_refused() -> None:
    with pytest.raises(Untranslatable, match="previous_response_id"):
        codec.decode_request({"model": "m", "input": "hi", "previous_response_id": "resp_1"})
    with pytest.raises(Untranslatable, match="stop sequences"):
        codec.encode_request(ChatRequest(model="m", messages=[], stop=["x"]))


def test_function_tools_go_out_non_strict_and_thinking_without_content_stays_behind() -> None:
    request = ChatRequest(
        model="m",
        messages=[
            Message("assistant", [Thinking("x", origin=WIRE), Thinking("y", "sig", origin="anthropic_messages")])
        ],
        tools=[Tool("f", parameters={"type": "object"})],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True},
        },
    )
    body = codec.encode_request(request)
    assert body["input"] == []
    assert body["tools"] == [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}]
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": True}
    }
    assert codec.decode_request(body).response_format == request.response_format


def test_recorded_text_response() -> None:
    doc = fixture("responses/response.json")
    response = codec.decode_response(doc)
    assert response == ChatResponse(
        doc["id"], "gpt-4o-2024-08-06", [Text(doc["output"][0]["content"][0]["text"])], usage=Usage(328, 52)
    )
    out = codec.encode_response(response)
    assert out["output"][0]["content"] == doc["output"][0]["content"]
    assert out["usage"] == doc["usage"] and out["status"] == "completed"


def test_recorded_function_call_response_with_reasoning() -> None:
    doc = fixture("responses/response_function_call.json")
    response = codec.decode_response(doc)
    assert response.content == [
        Thinking("**Checking the weather**\n\nI need both cities.", signature="gAAAAABor0A0-encrypted-2", origin=WIRE),
        ToolCall("call_Nv2mM1Jc0r1gZxvxy6cgqD9V", "get_weather", '{"location":"Paris, France"}'),
        ToolCall("call_qU6wJf6Qf3wqE6u7JcUFPgbF", "get_weather", '{"location":"Bogotá, Colombia"}'),
    ]
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(input_tokens=303, output_tokens=212, cache_read_tokens=2048)
    out = codec.encode_response(response)
    assert [i["type"] for i in out["output"]] == ["reasoning", "function_call", "function_call"]
    assert out["output"][0]["encrypted_content"] == "gAAAAABor0A0-encrypted-2"
    assert out["output"][2]["arguments"] == doc["output"][2]["arguments"]
    assert out["usage"]["input_tokens"] == 2351 and out["usage"]["input_tokens_details"] == {"cached_tokens": 2048}
    assert codec.decode_response(out) == response
    # to Anthropic, the reasoning stays behind and the calls go out
    anthropic = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_response(response)
    assert [b["type"] for b in anthropic["content"]] == ["tool_use", "tool_use"]


@pytest.mark.parametrize(
    ("stop", "status", "reason"),
    [("max_tokens", "incomplete", "max_output_tokens"), ("refusal", "incomplete", "content_filter")],
)
def test_incomplete_statuses(stop: str, status: str, reason: str) -> None:
    out = codec.encode_response(ChatResponse("r", "m", [Text("x")], stop))  # type: ignore[arg-type]
    assert (out["status"], out["incomplete_details"]) == (status, {"reason": reason})
    assert codec.decode_response(out).stop_reason == stop


def test_recorded_error() -> None:
    failure = codec.decode_error(400, raw("responses/error_invalid_request.json"))
    assert failure == Failure(
        400, "Unsupported parameter: 'temperature' is not supported with this model.", "invalid_request_error"
    )


STREAM = [
    Start("resp_68af4030592c81938ec0a5fbab4a3e9f05438e46b5f69a3b", "gpt-5-2025-08-07"),
    BlockStart(0, "thinking", origin=WIRE),
    ThinkingDelta(0, text="**Checking"),
    ThinkingDelta(0, text=" the weather**"),
    ThinkingDelta(0, signature="gAAAAABor0A0-encrypted-3"),
    BlockStop(0),
    BlockStart(1, "text"),
    TextDelta(1, "Let me"),
    TextDelta(1, " check that."),
    BlockStop(1),
    BlockStart(2, "tool_call", call_id="call_Nv2mM1Jc0r1gZxvxy6cgqD9V", name="get_weather"),
    ToolArgsDelta(2, '{"'),
    ToolArgsDelta(2, "location"),
    ToolArgsDelta(2, '":"'),
    ToolArgsDelta(2, "Paris"),
    ToolArgsDelta(2, ", France"),
    ToolArgsDelta(2, '"}'),
    BlockStop(2),
    Finish("tool_use", Usage(303, 212, 2048)),
]


@pytest.mark.parametrize("size", [1, 6, 100, 1 << 20])
def test_recorded_stream_decodes_at_any_chunk_size(size: int) -> None:
    assert decode_stream(codec, raw("responses/stream_function_call.sse"), size) == STREAM


def test_stream_encodes_the_documented_event_sequence() -> None:
    data = encode_stream(codec, STREAM)
    got = sse_payloads(data)
    want = sse_payloads(raw("responses/stream_function_call.sse"))
    assert [n for n, _ in got] == [n for n, _ in want]
    assert [d["sequence_number"] for _, d in got] == list(range(len(got)))
    for (name, g), (_, w) in zip(got, want, strict=True):
        if name.endswith(".delta"):
            assert g["delta"] == w["delta"]
        if name == "response.function_call_arguments.done":
            assert g["arguments"] == w["arguments"]
    final = got[-1][1]["response"]
    assert final["usage"]["input_tokens"] == 2351
    assert final["output"][0]["encrypted_content"] == "gAAAAABor0A0-encrypted-3"
    assert decode_stream(codec, data) == STREAM


def test_failed_stream_and_foreign_thinking() -> None:
    events = decode_stream(codec, raw("responses/stream_failed.sse"))
    assert events[1] == Failure(429, "Rate limit reached for gpt-5 on tokens per min (TPM).", "rate_limit_exceeded")
    foreign = [Start("r", "m"), BlockStart(0, "thinking", origin="anthropic_messages"), ThinkingDelta(0, "t", "s")]
    foreign += [BlockStop(0), BlockStart(1, "text"), TextDelta(1, "hi"), BlockStop(1), Finish("end_turn", Usage(1, 1))]
    # Another vendor's signed thinking goes out as a reasoning item whose encrypted_content seals the
    # block, so that Codex sends it back and the next turn reaches that vendor with its signature.
    items = [d["item"] for n, d in sse_payloads(encode_stream(codec, foreign)) if n == "response.output_item.done"]
    assert [i["type"] for i in items] == ["reasoning", "message"]
    assert items[0]["summary"] == [{"type": "summary_text", "text": "t"}]
    assert unseal(items[0]["encrypted_content"]) == [Thinking("t", signature="s", origin="anthropic_messages")]


def test_failures_from_other_vendors_get_openai_codes() -> None:
    data = encode_stream(codec, [Start("r", "m"), Failure(429, "Overloaded", "RESOURCE_EXHAUSTED")])
    failed = sse_payloads(data)[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "rate_limit_exceeded", "message": "Overloaded"}
    quota = encode_stream(codec, [Failure(429, "No credit", "insufficient_quota")])
    assert sse_payloads(quota)[-1][1]["response"]["error"]["code"] == "insufficient_quota"
