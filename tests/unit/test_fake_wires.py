"""The Responses API and Gemini fakes render their own fixtures back byte for byte (bodies and streams), and the
official SDKs pointed straight at them (`openai` responses, `google-genai`) parse what they send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from google import genai
from google.genai import errors, types

from tests.fakes.gemini_wire import GeminiReply, GeminiWire
from tests.fakes.responses_wire import ResponsesReply, ResponsesWire
from tests.fakes.upstream import FakeUpstreamThread
from tests.fakes.wire_kit import FIXTURES, ToolUse, parse_sse

WEATHER = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}


def _events(raw: bytes) -> list[tuple[str | None, Any]]:
    return [(name, json.loads(data)) for name, data in parse_sse(raw)]


def test_responses_fixtures_round_trip() -> None:
    wire = ResponsesWire()
    whole = json.loads((FIXTURES / "openai/response.json").read_bytes())
    item = whole["output"][0]
    deltas = [
        d["delta"]
        for n, d in _events((FIXTURES / "openai/response_stream.sse").read_bytes())
        if n.endswith("text.delta")
    ]
    reply = ResponsesReply(
        whole["model"],
        whole["id"],
        whole["created_at"],
        deltas,
        None,
        [],
        9,
        10,
        item_ids={"msg": item["id"], "fc": ""},
    )
    assert wire.render_response(reply) == (FIXTURES / "openai/response.json").read_bytes()  # byte for byte
    assert b"".join(wire.render_stream(reply)) == (FIXTURES / "openai/response_stream.sse").read_bytes()

    called = json.loads((FIXTURES / "openai/response_function_call.json").read_bytes())
    fc = called["output"][0]
    raw = (FIXTURES / "openai/response_function_call_stream.sse").read_bytes()
    pieces = [d["delta"] for n, d in _events(raw) if n.endswith("arguments.delta")]
    tool = ToolUse(fc["call_id"], fc["name"], json.loads(fc["arguments"]), chunks=pieces)
    reply = ResponsesReply(
        called["model"],
        called["id"],
        called["created_at"],
        None,
        tool,
        called["tools"],
        58,
        19,
        item_ids={"msg": "", "fc": fc["id"]},
    )
    assert wire.render_response(reply) == (FIXTURES / "openai/response_function_call.json").read_bytes()
    assert b"".join(wire.render_stream(reply)) == raw


def test_gemini_fixtures_round_trip() -> None:
    wire = GeminiWire()
    whole = json.loads((FIXTURES / "gemini/generate_content.json").read_bytes())
    raw = (FIXTURES / "gemini/stream_generate_content.sse").read_bytes()
    pieces = [json.loads(b[6:])["candidates"][0]["content"]["parts"][0]["text"] for b in raw.split(b"\r\n\r\n") if b]
    reply = GeminiReply(whole["modelVersion"], whole["responseId"], pieces, None, 5, 9)
    assert wire.render_response(reply) == (FIXTURES / "gemini/generate_content.json").read_bytes()  # byte for byte
    assert b"".join(wire.render_stream(reply)) == raw  # byte for byte, CRLF framing included
    called = json.loads((FIXTURES / "gemini/generate_content_function_call.json").read_bytes())
    call = called["candidates"][0]["content"]["parts"][0]["functionCall"]
    reply = GeminiReply(
        called["modelVersion"], called["responseId"], None, ToolUse("", call["name"], call["args"]), 52, 7
    )
    assert json.loads(wire.render_response(reply)) == called
    assert (
        b"".join(wire.render_stream(reply))
        == (FIXTURES / "gemini/stream_generate_content_function_call.sse").read_bytes()
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstreamThread]:
    with FakeUpstreamThread() as fake:
        yield fake


def test_openai_sdk_reads_the_responses_fake(upstream: FakeUpstreamThread) -> None:
    client = openai.OpenAI(base_url=upstream.base_url + "/v1", api_key="sk-test", max_retries=0)
    assert client.responses.create(model="gpt-4.1", input="hello").output_text == "echo: hello"
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": WEATHER}]
    with client.responses.stream(model="gpt-4.1", input="Paris", tools=tools, tool_choice="required") as stream:
        final = stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call" and json.loads(call.arguments) == {"location": "Paris"}
    assert final.usage is not None and final.usage.output_tokens > 0
    with pytest.raises(openai.BadRequestError):  # Chat's include_usage is not a Responses option
        client.responses.create(
            model="gpt-4.1", input="x", stream=True, extra_body={"stream_options": {"include_usage": True}}
        )


def test_genai_sdk_reads_the_gemini_fake(upstream: FakeUpstreamThread) -> None:
    client = genai.Client(api_key="AIza-test", http_options=types.HttpOptions(base_url=upstream.base_url))
    assert client.models.generate_content(model="gemini-2.5-flash", contents="hello there").text == "echo: hello there"
    fn = types.FunctionDeclaration(name="get_weather", parameters_json_schema=WEATHER)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[fn])],
        tool_config=types.ToolConfig(
            function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
        ),
    )
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="Paris", config=config))
    calls = [p.function_call for c in chunks for p in c.candidates[0].content.parts if p.function_call]  # type: ignore[index, union-attr]
    assert [(c.name, c.args) for c in calls] == [("get_weather", {"location": "Paris"})]
    assert client.models.count_tokens(model="gemini-2.5-flash", contents="count me").total_tokens
    upstream.upstream.fail_next(429)
    with pytest.raises(errors.ClientError) as limited:
        client.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
