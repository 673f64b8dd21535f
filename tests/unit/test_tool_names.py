"""Tool names valid for the target: a name the target refuses (over its length limit, characters it
does not take, a leading digit for Gemini) gets a stable valid one, and the loop stays consistent:
the caller's answer (whole and streamed) names its own tool again, and its next request, which
names the tool as it got it, reaches the target under the same valid name. Every request the
target gets is checked against the strict fakes' rules."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest

from sluice.core.canonical import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Finish,
    Message,
    Start,
    StreamEvent,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
    Untranslatable,
)
from sluice.core.types import Operation, Usage, WireFormat
from sluice.formats import tool_names
from sluice.formats.codecs import codec_for
from sluice.translation import Translation
from tests.fakes import rules_anthropic, rules_converse, rules_gemini, rules_openai_chat, rules_responses
from tests.fakes.rules_kit import Refusal, sign
from tests.unit.codec_helpers import chunks, decode_stream, encode_stream

ANTHROPIC, CHAT, RESPONSES = WireFormat.ANTHROPIC_MESSAGES, WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES
GEMINI, BEDROCK = WireFormat.GEMINI, WireFormat.BEDROCK_CONVERSE

MODELS = {
    ANTHROPIC: "claude-sonnet-4-5",
    CHAT: "gpt-4o",
    RESPONSES: "gpt-4.1",
    GEMINI: "gemini-2.5-flash",
    BEDROCK: "amazon.nova-pro-v1:0",
}
RULES: dict[WireFormat, Callable[[dict[str, Any], str], Refusal | None]] = {
    ANTHROPIC: rules_anthropic.check,
    CHAT: rules_openai_chat.check,
    RESPONSES: lambda doc, model: rules_responses.check(doc, model, {}.get),
    GEMINI: rules_gemini.check,
    BEDROCK: lambda doc, model: rules_converse.check(doc),
}
VALID = {
    ANTHROPIC: r"[a-zA-Z0-9_-]{1,128}",
    CHAT: r"[a-zA-Z0-9_-]{1,64}",
    RESPONSES: r"[a-zA-Z0-9_-]{1,64}",
    GEMINI: r"[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}",
    BEDROCK: r"[a-zA-Z0-9_-]{1,64}",
}

# Claude Code names an MCP server's tools mcp__<server>__<tool>: 86 characters here (Anthropic takes 128).
LONG = "mcp__claude_code_plugin_marketplace_server__search_repository_issues_by_label_and_state"
DOTTED = "workspace.files:read_file"  # Gemini takes `.` and `:`; OpenAI, Anthropic and Bedrock do not
DIGIT = "3d_render-scene"  # OpenAI and Anthropic take a leading digit; Gemini does not
PLAIN = "get_weather"  # valid everywhere: kept as it is

CASES = [
    (ANTHROPIC, CHAT, LONG),
    (ANTHROPIC, RESPONSES, LONG),
    (ANTHROPIC, GEMINI, LONG),
    (ANTHROPIC, BEDROCK, LONG),
    (GEMINI, CHAT, DOTTED),
    (GEMINI, RESPONSES, DOTTED),
    (GEMINI, ANTHROPIC, DOTTED),
    (GEMINI, BEDROCK, DOTTED),
    (CHAT, GEMINI, DIGIT),
    (RESPONSES, GEMINI, DIGIT),
    (CHAT, ANTHROPIC, DIGIT),  # valid for Anthropic: kept
    (RESPONSES, BEDROCK, DIGIT),  # valid for Bedrock: kept
]
ARGS = '{"query": "a.txt"}'


def tool(name: str) -> Tool:
    return Tool(name, "a tool", {"type": "object", "properties": {"query": {"type": "string"}}})


def caller_doc(source: WireFormat, request: ChatRequest) -> dict[str, Any]:
    """The caller's own request for `request` (the source codec writes it, names untouched)."""
    return codec_for(source).encode_request(request)


def decoded(source: WireFormat, doc: dict[str, Any]) -> ChatRequest:
    return codec_for(source).decode_request(doc, MODELS[source] if source in (GEMINI, BEDROCK) else None)


def provider_request(translation: Translation, target: WireFormat, stream: bool = False) -> dict[str, Any]:
    _, doc = translation.body(MODELS[target], stream=stream)
    refusal = RULES[target](doc, MODELS[target])
    assert refusal is None, f"the {target.value} API would refuse: {refusal}"
    return doc


def tool_names_sent(target: WireFormat, doc: dict[str, Any]) -> list[str]:
    if target is ANTHROPIC:
        return [t["name"] for t in doc["tools"]]
    if target is CHAT:
        return [t["function"]["name"] for t in doc["tools"]]
    if target is RESPONSES:
        return [t["name"] for t in doc["tools"]]
    if target is GEMINI:
        return [d["name"] for t in doc["tools"] for d in t["functionDeclarations"]]
    return [t["toolSpec"]["name"] for t in doc["toolConfig"]["tools"]]


def chosen(target: WireFormat, doc: dict[str, Any]) -> str:
    if target is ANTHROPIC:
        return str(doc["tool_choice"]["name"])
    if target is CHAT:
        return str(doc["tool_choice"]["function"]["name"])
    if target is RESPONSES:
        return str(doc["tool_choice"]["name"])
    if target is GEMINI:
        return str(doc["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"][0])
    return str(doc["toolConfig"]["toolChoice"]["tool"]["name"])


def next_turn(source: WireFormat, doc: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The caller's next request: its first, the answer as it got it, and the result of the call."""
    out = orjson.loads(orjson.dumps(doc))
    if source is ANTHROPIC:
        [use] = [b for b in answer["content"] if b["type"] == "tool_use"]
        result = {"type": "tool_result", "tool_use_id": use["id"], "content": "found it"}
        out["messages"] += [{"role": "assistant", "content": answer["content"]}, {"role": "user", "content": [result]}]
    elif source is CHAT:
        message = answer["choices"][0]["message"]
        [call] = message["tool_calls"]
        out["messages"] += [message, {"role": "tool", "tool_call_id": call["id"], "content": "found it"}]
    elif source is RESPONSES:
        [call] = [i for i in answer["output"] if i["type"] == "function_call"]
        out["input"] += [
            *answer["output"],
            {"type": "function_call_output", "call_id": call["call_id"], "output": "ok"},
        ]
    else:
        content = answer["candidates"][0]["content"]
        [call] = [p["functionCall"] for p in content["parts"] if "functionCall" in p]
        response = {"name": call["name"], "response": {"result": "found it"}} | (
            {"id": call["id"]} if "id" in call else {}
        )
        out["contents"] += [content, {"role": "user", "parts": [{"functionResponse": response}]}]
    return out


def answer_events(name: str) -> list[StreamEvent]:
    return [
        Start("r1", "m", Usage(input_tokens=5)),
        BlockStart(0, "text"),
        TextDelta(0, "Looking."),
        BlockStop(0),
        BlockStart(1, "tool_call", call_id="call_1", name=name),
        ToolArgsDelta(1, ARGS),
        BlockStop(1),
        Finish("tool_use", Usage(input_tokens=5, output_tokens=7)),
    ]


def answer_whole(name: str) -> ChatResponse:
    content = [Text("Looking."), ToolCall("call_1", name, ARGS)]
    return ChatResponse("r1", "m", content, "tool_use", usage=Usage(input_tokens=5, output_tokens=7))


async def _collect(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in stream])


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for c in chunks(data, 37):  # split anywhere, as the network does
        yield c


def streamed(translation: Translation, source: WireFormat, target: WireFormat, name: str) -> bytes:
    wire = encode_stream(codec_for(target), answer_events(name))
    encoder = codec_for(source).stream_encoder(translation.request)
    return asyncio.run(_collect(translation.stream(_chunks(wire), encoder)))


def calls_of(parts: list[Any]) -> list[ToolCall]:
    return [p for p in parts if isinstance(p, ToolCall)]


@pytest.mark.parametrize(("source", "target", "name"), CASES, ids=[f"{s.value}-{t.value}-{n[:6]}" for s, t, n in CASES])
def test_a_tool_name_round_trips_through_a_target_with_stricter_names(
    source: WireFormat, target: WireFormat, name: str
) -> None:
    first = ChatRequest(
        MODELS[source],
        [Message("user", [Text("look it up with the tool")])],
        tools=[tool(name), tool(PLAIN)],
        tool_choice=ToolChoice("tool", name=name),
        max_tokens=1024,
    )
    request = decoded(source, caller_doc(source, first))
    assert [t.name for t in request.tools] == [name, PLAIN]
    translation = Translation(source, target, Operation.GENERATE, request)

    # 1. The target gets valid names: the caller's when they are valid there, else stable new ones.
    sent = provider_request(translation, target)
    mapped, plain = tool_names_sent(target, sent)
    assert plain == PLAIN and re.fullmatch(VALID[target], mapped)
    if re.fullmatch(VALID[target], name):
        assert mapped == name
    else:
        assert mapped != name and len(mapped) <= 64
    assert chosen(target, sent) == mapped
    assert tool_names_sent(target, provider_request(translation, target, stream=True))[0] == mapped  # stable

    # 2. The target's answer, whole and streamed, reaches the caller under the caller's name.
    source_codec, target_codec = codec_for(source), codec_for(target)
    whole = orjson.dumps(target_codec.encode_response(answer_whole(mapped)))
    answer = source_codec.decode_response(orjson.loads(translation.response(whole, "req-1", MODELS[target])))
    [call] = calls_of(answer.content)
    assert call.name == name and orjson.loads(call.arguments_json) == orjson.loads(ARGS)
    events = decode_stream(source_codec, streamed(translation, source, target, mapped))
    assert [e.name for e in events if isinstance(e, BlockStart) and e.kind == "tool_call"] == [name]

    # 3. The caller's next turn names the tool as it got it; the target sees the same valid name again.
    caller_answer = orjson.loads(translation.response(whole, "req-1", MODELS[target]))
    following = decoded(source, next_turn(source, caller_doc(source, first), caller_answer))
    again = provider_request(Translation(source, target, Operation.GENERATE, following), target)
    assert tool_names_sent(target, again) == [mapped, PLAIN] and chosen(target, again) == mapped
    text = orjson.dumps(again).decode()
    assert text.count(f'"{mapped}"') >= 3  # the tool, the choice, and the history's call
    if mapped != name:
        assert f'"{name}"' not in text


def test_codexs_namespaced_tools_get_valid_names_on_claude_and_gemini_and_come_back_grouped() -> None:
    # A namespace and a function of 64 characters each: flattened, 130, over even Anthropic's 128.
    namespace, function = "n" * 30 + "." + "s" * 33, "f" * 64
    doc = {
        "model": "gpt-5",
        "input": "go",
        "tools": [{"type": "namespace", "name": namespace, "tools": [{"type": "function", "name": function}]}],
    }
    request = codec_for(RESPONSES).decode_request(doc)
    for target in (ANTHROPIC, GEMINI, CHAT):
        translation = Translation(RESPONSES, target, Operation.GENERATE, request)
        [mapped] = tool_names_sent(target, provider_request(translation, target))
        assert re.fullmatch(VALID[target], mapped)
        whole = orjson.dumps(codec_for(target).encode_response(answer_whole(mapped)))
        item = next(i for i in orjson.loads(translation.response(whole))["output"] if i["type"] == "function_call")
        assert (item["namespace"], item["name"]) == (namespace, function)
        events = [
            orjson.loads(line[6:])
            for line in streamed(translation, RESPONSES, target, mapped).splitlines()
            if line.startswith(b"data: {")
        ]
        added = [e["item"] for e in events if e["type"] == "response.output_item.added"]
        assert [(i["namespace"], i["name"]) for i in added if i["type"] == "function_call"] == [(namespace, function)]


def test_target_names_are_stable_distinct_and_within_the_limit() -> None:
    for rule in (tool_names.OPENAI, tool_names.ANTHROPIC, tool_names.GEMINI, tool_names.BEDROCK):
        for name in (LONG + LONG, DOTTED, DIGIT, "", "a b/c", "é" * 70):
            out = tool_names.target_name(name, rule)
            assert rule.valid.fullmatch(out) and len(out) <= rule.limit
            assert out == tool_names.target_name(name, rule)
        assert tool_names.target_name(PLAIN, rule) == PLAIN
        assert tool_names.target_name("a.b", rule) != tool_names.target_name("a:b", rule)
    assert tool_names.target_name(LONG, tool_names.ANTHROPIC) == LONG
    assert tool_names.target_name(LONG, tool_names.OPENAI).startswith("mcp__claude_code_plugin")


def test_two_tools_that_would_share_a_name_are_refused() -> None:
    mapped = tool_names.target_name(DOTTED, tool_names.OPENAI)
    request = ChatRequest("m", [Message("user", [Text("hi")])], tools=[tool(DOTTED), tool(mapped)])
    with pytest.raises(Untranslatable, match="would have one name"):
        tool_names.for_target(request, tool_names.OPENAI)


def test_a_request_whose_names_are_valid_is_left_as_it_is() -> None:
    request = ChatRequest("m", [Message("user", [Text("hi")])], tools=[tool(PLAIN)])
    assert tool_names.for_target(request, tool_names.OPENAI) is request
    assert tool_names.caller_names(request, tool_names.OPENAI) == {}


@pytest.mark.parametrize("source", [ANTHROPIC, CHAT, RESPONSES])
def test_gemini_3s_signed_call_to_a_renamed_tool_comes_back_signed_for_the_same_name(source: WireFormat) -> None:
    # Gemini 3 checks the thought signature of the current turn's calls against the call it issued (its name
    # included): the renamed tool must reach it under the same name, with its signature, on the next turn.
    name = LONG[:70] if source is ANTHROPIC else DIGIT
    model = "gemini-3-pro-preview"
    first = ChatRequest(MODELS[source], [Message("user", [Text("use the tool")])], tools=[tool(name)], max_tokens=1024)
    request = decoded(source, caller_doc(source, first))
    translation = Translation(source, GEMINI, Operation.GENERATE, request)
    _, sent = translation.body(model, stream=False)
    [mapped] = tool_names_sent(GEMINI, sent)
    assert mapped != name
    signature = sign(rules_gemini.SIGNATURE_KIND, mapped)
    part = {"functionCall": {"name": mapped, "args": {"query": "a"}}, "thoughtSignature": signature}
    gemini_answer = {
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
    }
    caller_answer = orjson.loads(translation.response(orjson.dumps(gemini_answer)))
    [call] = calls_of(codec_for(source).decode_response(caller_answer).content)
    assert call.name == name
    following = decoded(source, next_turn(source, caller_doc(source, first), caller_answer))
    _, again = Translation(source, GEMINI, Operation.GENERATE, following).body(model, stream=False)
    assert rules_gemini.check(again, model) is None
    calls = [p for c in again["contents"] for p in c["parts"] if "functionCall" in p]
    assert [(p["functionCall"]["name"], p.get("thoughtSignature")) for p in calls] == [(mapped, signature)]
