"""Gemini codec against payloads in the documented shapes (tests/fixtures/gemini)."""

from __future__ import annotations

import pytest

from sluice.core.canonical import (
    BlockStart,
    BlockStop,
    ChatRequest,
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
from tests.unit.codec_helpers import decode_stream, encode_stream, fixture, raw

codec = codec_for(WireFormat.GEMINI)
WIRE = "gemini"


def test_request_decodes_to_canonical() -> None:
    r = codec.decode_request(fixture("gemini/request.json"), model="gemini-2.5-pro")
    assert r.model == "gemini-2.5-pro"
    assert r.system == [Text("You are a helpful weather assistant.")]
    assert r.messages == [
        Message("user", [Text("What's the weather in Paris and London?"), Image("image/png", data="iVBORw0KGgo=")]),
        Message(
            "assistant",
            [
                Thinking("**Planning**", signature="CiQB0e2Kb-thought-sig", origin=WIRE),
                Thinking("", signature="CiIB0e2Kb-call-sig", origin=WIRE),
                ToolCall("call_1_1", "get_weather", '{"location":"Paris"}'),
                ToolCall("call_1_2", "get_weather", '{"location":"London"}'),
            ],
        ),
        Message(
            "user",
            [
                ToolResult("call_1_1", [Text("18C, sunny")], name="get_weather"),
                ToolResult("call_1_2", [Text('{"temperature":12,"unit":"C"}')], name="get_weather"),
            ],
        ),
        Message("assistant", [Text("Paris is 18C and sunny; London is 12C.")]),
        Message("user", [Text("Thanks!")]),
    ]
    assert r.tools[0].name == "get_weather" and r.tools[0].native is None
    assert r.tools[1] == Tool("googleSearch", native={"googleSearch": {}}, origin=WIRE)
    assert r.tool_choice == ToolChoice("auto")
    assert (r.temperature, r.top_p, r.top_k, r.max_tokens, r.stop) == (0.7, 0.95, 64, 8192, ["END"])
    assert r.reasoning == Reasoning(budget_tokens=1024, summary=True)
    assert r.extra == {WIRE: {"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}}


def test_request_encodes_back_with_call_ids_and_signatures_in_place() -> None:
    doc = fixture("gemini/request.json")
    out = codec.encode_request(codec.decode_request(doc, model="m"))
    model_turn = out["contents"][1]["parts"]
    assert model_turn[1] == {
        "functionCall": {"id": "call_1_1", "name": "get_weather", "args": {"location": "Paris"}},
        "thoughtSignature": "CiIB0e2Kb-call-sig",
    }
    for got, want in zip(out["contents"], doc["contents"], strict=True):
        for g, w in zip(got["parts"], want["parts"], strict=True):
            for key in ("functionCall", "functionResponse"):
                if key in w:
                    g[key].pop("id")
    assert out == doc


def test_results_without_ids_match_calls_by_name_in_order() -> None:
    doc = {
        "contents": [
            {"role": "model", "parts": [{"functionCall": {"name": "a", "args": {}}}, {"functionCall": {"name": "b"}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "b", "response": {"output": "B"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {"error": "boom"}}}]},
        ]
    }
    r = codec.decode_request(doc, model="m")
    assert r.messages[1].parts == [ToolResult("call_0_1", [Text("B")], name="b")]
    assert r.messages[2].parts == [ToolResult("call_0_0", [Text("boom")], is_error=True, name="a")]


def test_a_tool_result_from_another_format_finds_its_function_name() -> None:
    request = ChatRequest(
        model="m",
        messages=[
            Message("assistant", [ToolCall("toolu_1", "lookup", '{"q":"x"}')]),
            Message("user", [ToolResult("toolu_1", [Text("found")])]),
            Message("system", [Text("Be terse.")]),
        ],
    )
    out = codec.encode_request(request)
    assert out["contents"][1]["parts"] == [
        {"functionResponse": {"id": "toolu_1", "name": "lookup", "response": {"result": "found"}}}
    ]
    assert out["contents"][2] == {"role": "user", "parts": [{"text": "<system>\nBe terse.\n</system>"}]}
    with pytest.raises(Untranslatable, match="names no function"):
        codec.encode_request(ChatRequest(model="m", messages=[Message("user", [ToolResult("zz", [])])]))


def test_url_images_other_foreign_thinking_and_native_tools() -> None:
    url = ChatRequest(model="m", messages=[Message("user", [Image("image/jpeg", url="https://example.com/a.jpg")])])
    with pytest.raises(Untranslatable, match="Google file URIs"):
        codec.encode_request(url)
    files = "https://generativelanguage.googleapis.com/v1beta/files/abc"
    ok = ChatRequest(model="m", messages=[Message("user", [Image("image/jpeg", url=files)])])
    assert codec.encode_request(ok)["contents"][0]["parts"] == [
        {"fileData": {"mimeType": "image/jpeg", "fileUri": files}}
    ]
    foreign = Message("assistant", [Thinking("x", "sig", origin="anthropic_messages"), Text("hi")])
    assert codec.encode_request(ChatRequest(model="m", messages=[foreign]))["contents"][0]["parts"] == [{"text": "hi"}]
    with pytest.raises(Untranslatable, match="web_search"):
        codec.encode_request(
            ChatRequest(
                model="m", messages=[], tools=[Tool("w", native={"type": "web_search"}, origin="openai_responses")]
            )
        )


def test_recorded_text_response() -> None:
    doc = fixture("gemini/response.json")
    response = codec.decode_response(doc)
    assert response.content == [Text("AI works by learning patterns from data.")]
    assert response.usage == Usage(input_tokens=8, output_tokens=1179)  # thoughts are billed as output
    out = codec.encode_response(response)
    assert out["candidates"][0]["content"] == {"role": "model", "parts": doc["candidates"][0]["content"]["parts"]}
    assert out["usageMetadata"]["totalTokenCount"] == doc["usageMetadata"]["totalTokenCount"]
    assert (out["responseId"], out["modelVersion"]) == (doc["responseId"], doc["modelVersion"])


def test_recorded_function_call_response_gets_stable_ids() -> None:
    doc = fixture("gemini/response_function_call.json")
    response = codec.decode_response(doc)
    assert response == codec.decode_response(fixture("gemini/response_function_call.json"))
    thought, signed, paris, london = response.content
    assert thought == Thinking("I need to check the weather for both cities.", origin=WIRE)
    assert signed == Thinking("", signature="CiQB0e2Kb-sig-A", origin=WIRE)
    assert isinstance(paris, ToolCall) and isinstance(london, ToolCall)
    assert paris.id.startswith("call_") and paris.id != london.id
    assert (paris.arguments_json, london.arguments_json) == ('{"location":"Paris"}', '{"location":"London"}')
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(input_tokens=176, output_tokens=130, cache_read_tokens=1024)
    out = codec.encode_response(response)
    assert out["candidates"][0]["content"]["parts"][1]["thoughtSignature"] == "CiQB0e2Kb-sig-A"
    assert out["usageMetadata"]["promptTokenCount"] == 1200
    assert codec.decode_response(out) == response


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [("error_rate_limit.json", 429, "RESOURCE_EXHAUSTED"), ("error_invalid_argument.json", 400, "INVALID_ARGUMENT")],
)
def test_recorded_errors(name: str, status: int, kind: str) -> None:
    failure = codec.decode_error(status, raw(f"gemini/{name}"))
    assert (failure.status, failure.type) == (status, kind) and failure.message


TEXT_STREAM = [
    Start("5hfGaPmVL6ylqtsP3IWBkQU", "gemini-2.5-flash", Usage(10)),
    BlockStart(0, "text"),
    TextDelta(0, "The"),
    TextDelta(0, " sky is blue because of Rayleigh"),
    TextDelta(0, " scattering."),
    BlockStop(0),
    Finish("end_turn", Usage(10, 36)),
]


@pytest.mark.parametrize("size", [1, 4, 50, 1 << 20])
def test_recorded_text_stream(size: int) -> None:
    assert decode_stream(codec, raw("gemini/stream.sse"), size) == TEXT_STREAM
    assert decode_stream(codec, encode_stream(codec, TEXT_STREAM)) == TEXT_STREAM


def test_recorded_function_call_stream() -> None:
    events = decode_stream(codec, raw("gemini/stream_function_call.sse"), 7)
    assert events[1:4] == [
        BlockStart(0, "thinking", origin=WIRE),
        ThinkingDelta(0, "Checking both cities."),
        BlockStop(0),
    ]
    assert events[4:7] == [
        BlockStart(1, "thinking", origin=WIRE),
        ThinkingDelta(1, signature="CiQB0e2Kb-sig-S"),
        BlockStop(1),
    ]
    assert isinstance(events[7], BlockStart) and events[7].name == "get_weather"
    assert events[8] == ToolArgsDelta(2, '{"location":"Paris"}')
    assert events[-1] == Finish("tool_use", Usage(90, 60))
    data = encode_stream(codec, events)
    assert b'"thoughtSignature":"CiQB0e2Kb-sig-S"' in data.split(b"\n\n")[1]  # on the call, as Gemini 3 wants
    assert decode_stream(codec, data) == events


def test_streamed_arguments_from_another_format_are_sent_whole() -> None:
    events = [
        Start("r", "m"),
        BlockStart(0, "tool_call", call_id="toolu_1", name="f"),
        ToolArgsDelta(0, '{"a"'),
        ToolArgsDelta(0, ": [1, 2]}"),
        BlockStop(0),
        Finish("tool_use", Usage(1, 1)),
    ]
    out = decode_stream(codec, encode_stream(codec, events))
    assert out[2] == ToolArgsDelta(0, '{"a":[1,2]}') and out[1] == BlockStart(
        0, "tool_call", call_id="toolu_1", name="f"
    )


def test_error_in_stream() -> None:
    data = b'data: {"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}\n\n'
    assert decode_stream(codec, data) == [Failure(503, "The model is overloaded.", "UNAVAILABLE")]


def test_snake_case_field_names_are_read_like_camel_case() -> None:
    # Google's API takes proto field names as well as their JSON names; some google-genai versions send those.
    schema = {"type": "object", "properties": {"first_name": {"type": "string"}}, "required": ["first_name"]}
    snake = {
        "system_instruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"inline_data": {"mime_type": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [{"function_call": {"name": "greet", "args": {"first_name": "Ada"}}}]},
            {"role": "user", "parts": [{"function_response": {"name": "greet", "response": {"the_result": "ok"}}}]},
        ],
        "tools": [
            {
                "function_declarations": [
                    {"name": "greet", "parameters_json_schema": schema},
                    {
                        "name": "old_style",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"some_field": {"type": "STRING", "any_of": [{"type": "STRING"}]}},
                            "property_ordering": ["some_field"],
                        },
                    },
                ]
            },
            {"google_search": {}},
        ],
        "tool_config": {"function_calling_config": {"mode": "ANY", "allowed_function_names": ["greet"]}},
        "generation_config": {
            "max_output_tokens": 100,
            "stop_sequences": ["END"],
            "response_mime_type": "application/json",
            "response_json_schema": schema,
            "thinking_config": {"thinking_budget": 2048, "include_thoughts": True},
        },
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    camel = {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "greet", "args": {"first_name": "Ada"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "greet", "response": {"the_result": "ok"}}}]},
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "greet", "parametersJsonSchema": schema},
                    {
                        "name": "old_style",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"some_field": {"type": "STRING", "anyOf": [{"type": "STRING"}]}},
                            "propertyOrdering": ["some_field"],
                        },
                    },
                ]
            },
            {"googleSearch": {}},
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["greet"]}},
        "generationConfig": {
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "responseMimeType": "application/json",
            "responseJsonSchema": schema,
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    }
    read = codec.decode_request(snake, model="gemini-2.5-flash")
    assert read == codec.decode_request(camel, model="gemini-2.5-flash")
    greet, old_style, search = read.tools
    assert greet.parameters == schema  # property names are the caller's: never renamed
    assert old_style.parameters["properties"] == {"some_field": {"type": "string", "anyOf": [{"type": "string"}]}}
    assert search.native == {"googleSearch": {}}
    assert read.tool_choice == ToolChoice("tool", name="greet") and read.max_tokens == 100 and read.stop == ["END"]
    assert read.messages[1].parts[0].arguments_json == '{"first_name":"Ada"}'  # type: ignore[union-attr]
    assert read.extra == {"gemini": {"safetySettings": camel["safetySettings"]}}
