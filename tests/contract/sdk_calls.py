"""One call per official SDK and surface, streamed or not, with or without a forced tool call, read back into one
shape (`Answer`) so a test can compare surfaces: the `anthropic` SDK on /v1/messages, `openai` on
/v1/chat/completions and /v1/responses, `google-genai` on generateContent / streamGenerateContent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from sluice.core.types import WireFormat
from sluice.formats.codecs import codec_for

SURFACES = ("anthropic", "openai_chat", "openai_responses", "gemini")
WIRES = {
    "anthropic": WireFormat.ANTHROPIC_MESSAGES,
    "openai_chat": WireFormat.OPENAI_CHAT,
    "openai_responses": WireFormat.OPENAI_RESPONSES,
    "gemini": WireFormat.GEMINI,
}


def needs_codecs(*surfaces: str) -> None:
    """Skips the test while a format it translates has no codec registered yet (they land one by one)."""
    for surface in surfaces:
        try:
            codec_for(WIRES.get(surface, WireFormat.OPENAI_CHAT if surface == "openai" else WireFormat.GEMINI))
        except KeyError:
            pytest.skip(f"no {surface} codec registered yet")


WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "City and country"}},
    "required": ["location"],
}
TOOL_NAME = "get_weather"
TOOL_STOP = {"anthropic": "tool_use", "openai_chat": "tool_calls", "openai_responses": "completed", "gemini": "STOP"}
TEXT_STOP = {"anthropic": "end_turn", "openai_chat": "stop", "openai_responses": "completed", "gemini": "STOP"}


@dataclass
class Answer:
    text: str = ""
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, arguments)
    stop: str | None = None
    input_tokens: int = 0  # as the caller's format counts them (cached included)
    output_tokens: int = 0
    request_id: str = ""


def call(surface: str, base_url: str, key: str, model: str, prompt: str, *, stream: bool, tool: bool) -> Answer:
    return {
        "anthropic": _anthropic,
        "openai_chat": _chat,
        "openai_responses": _responses,
        "gemini": _gemini,
    }[surface](base_url, key, model, prompt, stream, tool)


def _anthropic(base_url: str, key: str, model: str, prompt: str, stream: bool, tool: bool) -> Answer:
    client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)
    kw: dict[str, Any] = {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": prompt}]}
    if tool:
        kw["tools"] = [{"name": TOOL_NAME, "description": "Get the weather", "input_schema": WEATHER_SCHEMA}]
        kw["tool_choice"] = {"type": "any"}
    if stream:
        with client.messages.stream(**kw) as s:
            message = s.get_final_message()
            request_id = s.response.headers["x-request-id"]
    else:
        raw = client.messages.with_raw_response.create(**kw)
        message, request_id = raw.parse(), raw.headers["x-request-id"]
    answer = Answer(stop=message.stop_reason, request_id=request_id)
    for block in message.content:
        if block.type == "text":
            answer.text += block.text
        elif block.type == "tool_use":
            answer.tools.append((block.name, dict(block.input)))  # type: ignore[call-overload]
    u = message.usage
    answer.input_tokens = u.input_tokens + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    answer.output_tokens = u.output_tokens
    return answer


def _chat(base_url: str, key: str, model: str, prompt: str, stream: bool, tool: bool) -> Answer:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
    kw: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if tool:
        fn = {"name": TOOL_NAME, "description": "Get the weather", "parameters": WEATHER_SCHEMA}
        kw["tools"] = [{"type": "function", "function": fn}]
        kw["tool_choice"] = "required"
    if not stream:
        raw = client.chat.completions.with_raw_response.create(**kw)
        done = raw.parse()
        choice = done.choices[0]
        answer = Answer(
            text=choice.message.content or "", stop=choice.finish_reason, request_id=raw.headers["x-request-id"]
        )
        for c in choice.message.tool_calls or []:
            answer.tools.append((c.function.name, json.loads(c.function.arguments)))  # type: ignore[union-attr]
        if done.usage:
            answer.input_tokens, answer.output_tokens = done.usage.prompt_tokens, done.usage.completion_tokens
        return answer
    raw_stream = client.chat.completions.with_raw_response.create(
        **kw, stream=True, stream_options={"include_usage": True}
    )
    answer = Answer(request_id=raw_stream.headers["x-request-id"])
    calls: dict[int, list[str]] = {}
    for chunk in raw_stream.parse():
        if chunk.usage:
            answer.input_tokens, answer.output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
        for choice in chunk.choices:
            answer.text += choice.delta.content or ""
            for d in choice.delta.tool_calls or []:
                entry = calls.setdefault(d.index, ["", ""])
                if d.function and d.function.name:
                    entry[0] += d.function.name
                if d.function and d.function.arguments:
                    entry[1] += d.function.arguments
            if choice.finish_reason:
                answer.stop = choice.finish_reason
    answer.tools = [(name, json.loads(args)) for name, args in (calls[i] for i in sorted(calls))]
    return answer


def _responses(base_url: str, key: str, model: str, prompt: str, stream: bool, tool: bool) -> Answer:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
    kw: dict[str, Any] = {"model": model, "input": [{"role": "user", "content": prompt}], "store": False}
    if tool:
        kw["tools"] = [
            {"type": "function", "name": TOOL_NAME, "description": "Get the weather", "parameters": WEATHER_SCHEMA}
        ]
        kw["tool_choice"] = "required"
    if stream:
        raw_stream = client.responses.with_raw_response.create(**kw, stream=True)
        request_id, deltas, final = raw_stream.headers["x-request-id"], [], None
        for event in raw_stream.parse():
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
        assert final is not None, "the stream ended without response.completed"
        assert "".join(deltas) == final.output_text  # the deltas add up to the final text
    else:
        raw = client.responses.with_raw_response.create(**kw)
        final, request_id = raw.parse(), raw.headers["x-request-id"]
    answer = Answer(text=final.output_text, stop=final.status, request_id=request_id)
    for item in final.output:
        if item.type == "function_call":
            answer.tools.append((item.name, json.loads(item.arguments)))
    if final.usage:
        answer.input_tokens, answer.output_tokens = final.usage.input_tokens, final.usage.output_tokens
    return answer


def _gemini(base_url: str, key: str, model: str, prompt: str, stream: bool, tool: bool) -> Answer:
    client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=base_url))
    config = None
    if tool:
        # `parameters`, an OpenAPI-style Schema; the JSON-schema variant is checked in test_translation.py.
        schema = types.Schema.model_validate(WEATHER_SCHEMA)
        fn = types.FunctionDeclaration(name=TOOL_NAME, description="Get the weather", parameters=schema)
        config = types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[fn])],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
            ),
        )
    chunks = (
        list(client.models.generate_content_stream(model=model, contents=prompt, config=config))
        if stream
        else [client.models.generate_content(model=model, contents=prompt, config=config)]
    )
    answer = Answer()
    for chunk in chunks:
        for candidate in chunk.candidates or []:
            for part in (candidate.content.parts if candidate.content else None) or []:
                if part.text:
                    answer.text += part.text
                if part.function_call:
                    answer.tools.append((part.function_call.name or "", dict(part.function_call.args or {})))
            if candidate.finish_reason:
                answer.stop = candidate.finish_reason.value
        if chunk.usage_metadata:
            answer.input_tokens = chunk.usage_metadata.prompt_token_count or 0
            answer.output_tokens = (chunk.usage_metadata.candidates_token_count or 0) + (
                chunk.usage_metadata.thoughts_token_count or 0
            )
        headers = (chunk.sdk_http_response.headers if chunk.sdk_http_response else None) or {}
        answer.request_id = answer.request_id or headers.get("x-request-id", "")
    return answer


def second_turn(surface: str, base_url: str, key: str, model: str, prompt: str) -> str:
    """The turn after a tool call: the conversation so far (the user's prompt, the model's call of get_weather, the
    tool's result "sunny") in the caller's own format. Returns the answer's text."""
    args = {"location": prompt}
    if surface == "anthropic":
        client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0)
        message = client.messages.create(
            model=model,
            max_tokens=100,
            tools=[{"name": TOOL_NAME, "description": "Get the weather", "input_schema": WEATHER_SCHEMA}],
            messages=[
                {"role": "user", "content": prompt},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": TOOL_NAME, "input": args}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
            ],
        )
        return "".join(b.text for b in message.content if b.type == "text")
    if surface == "openai_chat":
        chat = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
        call = {"id": "call_1", "type": "function", "function": {"name": TOOL_NAME, "arguments": json.dumps(args)}}
        done = chat.chat.completions.create(
            model=model,
            tools=[{"type": "function", "function": {"name": TOOL_NAME, "parameters": WEATHER_SCHEMA}}],
            messages=[
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": None, "tool_calls": [call]},  # type: ignore[list-item]
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
        )
        return done.choices[0].message.content or ""
    if surface == "openai_responses":
        responses = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
        final = responses.responses.create(
            model=model,
            store=False,
            tools=[{"type": "function", "name": TOOL_NAME, "parameters": WEATHER_SCHEMA, "strict": False}],
            input=[
                {"role": "user", "content": prompt},
                {"type": "function_call", "call_id": "call_1", "name": TOOL_NAME, "arguments": json.dumps(args)},
                {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            ],
        )
        return final.output_text
    client = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=base_url))
    schema = types.Schema.model_validate(WEATHER_SCHEMA)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(name=TOOL_NAME, parameters=schema)])]
    )
    contents = [
        types.Content(role="user", parts=[types.Part(text=prompt)]),
        types.Content(role="model", parts=[types.Part(function_call=types.FunctionCall(name=TOOL_NAME, args=args))]),
        types.Content(
            role="user",
            parts=[types.Part(function_response=types.FunctionResponse(name=TOOL_NAME, response={"result": "sunny"}))],
        ),
    ]
    return client.models.generate_content(model=model, contents=contents, config=config).text or ""  # type: ignore[arg-type]
