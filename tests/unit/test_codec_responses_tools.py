"""Codex's tools on other vendors' models: `namespace` tools flattened (and calls to them mapped back),
`custom` (freeform) tools as functions of one string, `additional_tools` input items, and the hosted
`web_search` left out for targets that cannot run it."""

from __future__ import annotations

import re
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
    ToolArgsDelta,
    ToolCall,
    Untranslatable,
)
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, Usage, WireFormat
from sluice.formats.codecs import codec_for
from sluice.formats.openai_responses.tools import flat_name
from sluice.translation import Translation
from tests.unit.codec_helpers import encode_stream, fixture, sse_payloads

RESP, ANTHROPIC, GEMINI = WireFormat.OPENAI_RESPONSES, WireFormat.ANTHROPIC_MESSAGES, WireFormat.GEMINI
codec = codec_for(RESP)
AGENT_TOOLS = ["close_agent", "resume_agent", "send_input", "spawn_agent", "wait_agent"]


def other_vendor() -> dict[str, Any]:
    return fixture("codex/responses_request_other_vendor_model.json")  # type: ignore[no-any-return]


def test_namespace_tools_are_flattened_and_web_search_is_optional() -> None:
    doc = other_vendor()
    request = codec.decode_request(doc)
    names = [t.name for t in request.tools]
    assert [n for n in names if n.startswith("multi_agent_v1__")] == [f"multi_agent_v1__{n}" for n in AGENT_TOOLS]
    spawn = next(t for t in request.tools if t.name == "multi_agent_v1__spawn_agent")
    assert spawn.namespaced == ("multi_agent_v1", "spawn_agent") and spawn.native is None
    assert spawn.description.startswith("Tools for spawning and managing sub-agents.\n\n")
    [namespace] = [t for t in doc["tools"] if t["type"] == "namespace"]
    assert spawn.parameters == next(c for c in namespace["tools"] if c["name"] == "spawn_agent")["parameters"]
    [search] = [t for t in request.tools if t.native is not None]
    assert search.optional and search.native == {"type": "web_search", "external_web_access": False}


@pytest.mark.parametrize("target", [ANTHROPIC, GEMINI])
def test_codex_request_reaches_claude_and_gemini_without_web_search(target: WireFormat) -> None:
    doc = other_vendor()
    translation = Translation(RESP, target, Operation.GENERATE, codec.decode_request(doc))
    _, body = translation.body("the-model", stream=True)
    assert translation.dropped == ("web_search",)
    if target is ANTHROPIC:
        sent = [t["name"] for t in body["tools"]]
    else:
        [group] = body["tools"]
        sent = [d["name"] for d in group["functionDeclarations"]]
    assert "exec_command" in sent and "multi_agent_v1__spawn_agent" in sent and "web_search" not in sent
    assert "web_search" not in orjson.dumps(body["tools"]).decode()
    # The canonical request is shared by every attempt of the request: a drop does not change it.
    assert any(t.native is not None for t in translation.request.tools)


def test_other_hosted_tools_are_still_refused() -> None:
    request = codec.decode_request({"model": "m", "input": "hi", "tools": [{"type": "file_search"}]})
    with pytest.raises(SluiceError) as refused:
        Translation(RESP, ANTHROPIC, Operation.GENERATE, request).body("claude", stream=False)
    assert refused.value.kind is ErrorKind.CALLER_UNTRANSLATABLE and "file_search" in refused.value.message


def test_a_call_to_a_flattened_tool_goes_back_under_its_namespace() -> None:
    request = codec.decode_request(other_vendor())
    call = ToolCall("toolu_1", "multi_agent_v1__spawn_agent", '{"message":"hi"}')
    plain = ToolCall("toolu_2", "exec_command", '{"cmd":"ls"}')
    whole = codec.encode_response(ChatResponse("r", "m", [call, plain], "tool_use"), request)
    first, second = whole["output"]
    assert (first["name"], first["namespace"], first["call_id"]) == ("spawn_agent", "multi_agent_v1", "toolu_1")
    assert second["name"] == "exec_command" and "namespace" not in second

    events = [
        Start("r", "m"),
        BlockStart(0, "tool_call", call_id="toolu_1", name="multi_agent_v1__spawn_agent"),
        ToolArgsDelta(0, '{"message":"hi"}'),
        BlockStop(0),
        Finish("tool_use", Usage(1, 1)),
    ]
    payloads = sse_payloads(encode_stream(codec, events, request))
    items = [p["item"] for name, p in payloads if name in ("response.output_item.added", "response.output_item.done")]
    assert all((i["name"], i["namespace"]) == ("spawn_agent", "multi_agent_v1") for i in items)


def test_an_anthropic_answer_reaches_codex_with_the_namespaced_name() -> None:
    request = codec.decode_request(other_vendor())
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "multi_agent_v1__wait_agent", "input": {}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }
    out = Translation(RESP, ANTHROPIC, Operation.GENERATE, request).response(orjson.dumps(answer))
    [item] = orjson.loads(out)["output"]
    assert (item["type"], item["name"], item["namespace"]) == ("function_call", "wait_agent", "multi_agent_v1")


def test_namespaced_calls_in_the_history_get_the_flat_name() -> None:
    doc = other_vendor()
    doc["input"] += [
        {
            "type": "function_call",
            "name": "spawn_agent",
            "namespace": "multi_agent_v1",
            "arguments": '{"message":"go"}',
            "call_id": "toolu_1",
        },
        {"type": "function_call_output", "call_id": "toolu_1", "output": "spawned"},
    ]
    request = codec.decode_request(doc)
    assert request.messages[-2] == Message(
        "assistant", [ToolCall("toolu_1", "multi_agent_v1__spawn_agent", '{"message":"go"}')]
    )
    translation = Translation(RESP, ANTHROPIC, Operation.GENERATE, request)
    _, body = translation.body("claude", stream=False)
    assert body["messages"][-2]["content"][0]["name"] == "multi_agent_v1__spawn_agent"
    # And back to the Responses format: the namespace is restored, in the tools and in the history.
    again = codec.encode_request(request)
    [group] = [t for t in again["tools"] if t["type"] == "namespace"]
    assert [t["name"] for t in group["tools"]] == AGENT_TOOLS
    assert again["input"][-2]["name"] == "spawn_agent" and again["input"][-2]["namespace"] == "multi_agent_v1"


def test_additional_tools_items_are_read() -> None:
    doc = fixture("codex/responses_request_default_model.json")
    assert "tools" not in doc and doc["input"][0]["type"] == "additional_tools"
    request = codec.decode_request(doc)
    names = [t.name for t in request.tools]
    assert "clock__sleep" in names and "collaboration__spawn_agent" in names and "functions__wait" in names
    assert request.system and request.system[0].text.startswith("You are Codex")  # the item is not a message
    _, body = Translation(RESP, ANTHROPIC, Operation.GENERATE, request).body("claude", stream=False)
    assert "clock__sleep" in [t["name"] for t in body["tools"]]


def test_flat_names_become_valid_for_the_target_and_come_back_under_their_namespace() -> None:
    assert flat_name("multi_agent_v1", "spawn_agent") == "multi_agent_v1__spawn_agent"
    tools = [
        {"type": "namespace", "name": "a/b", "tools": [{"type": "function", "name": "c"}]},
        {"type": "namespace", "name": "a.b", "tools": [{"type": "function", "name": "c"}]},
    ]
    request = codec.decode_request({"model": "m", "input": "hi", "tools": tools})
    translation = Translation(RESP, ANTHROPIC, Operation.GENERATE, request)
    _, body = translation.body("claude", stream=False)
    odd, other = (t["name"] for t in body["tools"])
    assert odd != other and all(re.fullmatch(r"[A-Za-z0-9_-]{1,128}", n) for n in (odd, other))
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": odd, "input": {}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    response = orjson.loads(translation.response(orjson.dumps(answer)))
    assert (response["output"][0]["name"], response["output"][0]["namespace"]) == ("c", "a/b")


def test_a_flattened_name_that_clashes_is_refused() -> None:
    tools = [
        {"type": "function", "name": "ns__f"},
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
    ]
    with pytest.raises(Untranslatable, match="ns__f"):
        codec.decode_request({"model": "m", "input": "hi", "tools": tools})


def test_a_request_whose_only_tool_is_left_out_has_no_tool_choice_either() -> None:
    doc = {"model": "m", "input": "hi", "tools": [{"type": "web_search"}], "tool_choice": "auto"}
    for target in (WireFormat.OPENAI_CHAT, ANTHROPIC, GEMINI):
        translation = Translation(RESP, target, Operation.GENERATE, codec.decode_request(doc))
        _, body = translation.body("x", stream=False)
        assert translation.dropped == ("web_search",)
        assert not {"tools", "tool_choice", "toolConfig"} & set(body)
    required = codec.decode_request(doc | {"tool_choice": "required"})
    with pytest.raises(SluiceError, match="tool_choice requires a tool"):
        Translation(RESP, ANTHROPIC, Operation.GENERATE, required).body("x", stream=False)


def default_model() -> ChatRequest:
    return codec.decode_request(fixture("codex/responses_request_default_model.json"))


def test_a_custom_tool_is_a_function_of_one_string() -> None:
    request = default_model()
    [exec_tool] = [t for t in request.tools if t.freeform is not None]
    assert exec_tool.name == "functions__exec" and exec_tool.namespaced == ("functions", "exec")
    assert exec_tool.parameters["required"] == ["input"]
    grammar = exec_tool.freeform["definition"]  # type: ignore[index]
    assert grammar in exec_tool.parameters["properties"]["input"]["description"]
    _, body = Translation(RESP, ANTHROPIC, Operation.GENERATE, request).body("claude", stream=False)
    [sent] = [t for t in body["tools"] if t["name"] == "functions__exec"]
    assert sent["input_schema"]["properties"]["input"]["type"] == "string"
    # Back to the Responses format, it is the custom tool it was, in its namespace.
    [group] = [t for t in codec.encode_request(request)["tools"] if t["name"] == "functions"]
    assert group["tools"][0] == {
        "type": "custom",
        "name": "exec",
        "description": exec_tool.description,
        "format": exec_tool.freeform,
    }


def test_a_call_to_a_custom_tool_goes_back_as_a_custom_tool_call() -> None:
    request = default_model()
    call = ToolCall("toolu_1", "functions__exec", orjson.dumps({"input": 'text("hi")'}).decode())
    [item] = codec.encode_response(ChatResponse("r", "m", [call], "tool_use"), request)["output"]
    assert item["type"] == "custom_tool_call" and item["call_id"] == "toolu_1"
    assert (item["name"], item["namespace"], item["input"]) == ("exec", "functions", 'text("hi")')

    events = [
        Start("r", "m"),
        BlockStart(0, "tool_call", call_id="toolu_1", name="functions__exec"),
        ToolArgsDelta(0, '{"input": "text(\\"h'),
        ToolArgsDelta(0, 'i\\")"}'),
        BlockStop(0),
        Finish("tool_use", Usage(1, 1)),
    ]
    payloads = sse_payloads(encode_stream(codec, events, request))
    names = [name for name, _ in payloads]
    assert "response.function_call_arguments.delta" not in names
    [delta] = [p for name, p in payloads if name == "response.custom_tool_call_input.delta"]
    [done] = [p for name, p in payloads if name == "response.custom_tool_call_input.done"]
    [item] = [p["item"] for name, p in payloads if name == "response.output_item.done"]
    assert delta["delta"] == done["input"] == item["input"] == 'text("hi")'
    assert (item["type"], item["name"], item["namespace"]) == ("custom_tool_call", "exec", "functions")


def test_custom_tool_calls_in_the_history_are_calls_of_one_string() -> None:
    doc = fixture("codex/responses_request_default_model.json")
    doc["input"] += [
        {"type": "custom_tool_call", "call_id": "c1", "name": "exec", "namespace": "functions", "input": "exit()"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"},
    ]
    request = codec.decode_request(doc)
    _, body = Translation(RESP, ANTHROPIC, Operation.GENERATE, request).body("claude", stream=False)
    call, result = body["messages"][-2]["content"][0], body["messages"][-1]["content"][0]
    assert (call["type"], call["name"], call["input"]) == ("tool_use", "functions__exec", {"input": "exit()"})
    assert result["type"] == "tool_result" and result["tool_use_id"] == "c1"
    again = codec.encode_request(request)["input"][-2:]
    assert again[0] == doc["input"][-2] and again[1] == doc["input"][-1]
