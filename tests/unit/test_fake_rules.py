"""The fakes refuse what the real APIs refuse: each rule refuses a bad request and lets the good one through, and the
fake servers answer a refusal in the API's own error format (checked with the official SDKs)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fakes import rules_anthropic, rules_converse, rules_gemini, rules_openai_chat, rules_responses
from tests.fakes.rules_kit import Refusal, sign
from tests.fakes.upstream import FakeUpstreamThread
from tests.fakes.wire_kit import FIXTURES

Check = Callable[[dict[str, Any], str], Refusal | None]


def _apply(doc: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    change(out)
    return out


def _refused(check: Check, doc: dict[str, Any], model: str, words: str) -> None:
    refusal = check(doc, model)
    assert refusal is not None, f"accepted a request the API refuses ({words})"
    assert words in refusal.message, refusal.message


# --------------------------------------------------------------------------------------------------------------------
# Anthropic Messages
# --------------------------------------------------------------------------------------------------------------------

THOUGHT = "Considering: the weather"
TOOL_LOOP = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 4096,
    "system": "be brief",
    "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    "messages": [
        {"role": "user", "content": "weather in Paris? use a tool"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_01abc", "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01abc", "content": "sunny"},
                {"type": "text", "text": "ok?"},
            ],
        },
    ],
}
THINKING_LOOP = _apply(
    TOOL_LOOP,
    lambda d: (
        d.update(thinking={"type": "enabled", "budget_tokens": 2048}),
        d["messages"][1]["content"].insert(
            0, {"type": "thinking", "thinking": THOUGHT, "signature": sign(rules_anthropic.THINKING_KIND, THOUGHT)}
        ),
    ),
)

ANTHROPIC_BAD: list[tuple[str, dict[str, Any], Callable[[dict[str, Any]], None], str]] = [
    ("max_tokens required", TOOL_LOOP, lambda d: d.pop("max_tokens"), "max_tokens: Field required"),
    ("messages required", TOOL_LOOP, lambda d: d.pop("messages"), "messages: Field required"),
    (
        "no system role before Opus 4.8",
        TOOL_LOOP,
        lambda d: d["messages"].insert(0, {"role": "system", "content": "x"}),
        'Unexpected role "system"',
    ),
    (
        "no other role",
        TOOL_LOOP,
        lambda d: d["messages"].insert(0, {"role": "developer", "content": "x"}),
        "messages.0.role: Input should be 'user' or 'assistant'",
    ),
    (
        "tool_result only in user turns",
        TOOL_LOOP,
        lambda d: d["messages"][1]["content"].append({"type": "tool_result", "tool_use_id": "x", "content": ""}),
        "Input tag 'tool_result'",
    ),
    (
        "tool_use id pattern",
        TOOL_LOOP,
        lambda d: (
            d["messages"][1]["content"][1].update(id="call.1|x"),
            d["messages"][2]["content"][0].update(tool_use_id="call.1|x"),
        ),
        "tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'",
    ),
    (
        "non-empty messages",
        TOOL_LOOP,
        lambda d: d["messages"][1].update(content=[]),
        "messages.1: all messages must have non-empty content except for the optional final assistant message",
    ),
    (
        "non-empty text blocks",
        TOOL_LOOP,
        lambda d: d["messages"][1]["content"][0].update(text=""),
        "messages: text content blocks must be non-empty",
    ),
    (
        "text blocks with more than whitespace",
        TOOL_LOOP,
        lambda d: d["messages"][2]["content"][1].update(text=" \n"),
        "text content blocks must contain non-whitespace text",
    ),
    (
        "tool name pattern",
        TOOL_LOOP,
        lambda d: d["tools"][0].update(name="mcp/server.tool"),
        "tools.0.custom.name: String should match pattern",
    ),
    (
        "tool name length",
        TOOL_LOOP,
        lambda d: d["tools"][0].update(name="x" * 129),
        "tools.0.custom.name: String should have at most 128 characters",
    ),
    (
        "every tool_use answered in the next message",
        TOOL_LOOP,
        lambda d: d["messages"][2].update(content="never mind"),
        "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_01abc",
    ),
    (
        "tool results first",
        TOOL_LOOP,
        lambda d: d["messages"][2]["content"].reverse(),
        "Did not find 1 `tool_result` block(s) at the beginning of this message",
    ),
    (
        "tool_result answers a tool_use of the previous message",
        TOOL_LOOP,
        lambda d: d["messages"][2]["content"].insert(
            1, {"type": "tool_result", "tool_use_id": "toolu_other", "content": ""}
        ),
        "unexpected `tool_use_id` found in `tool_result` blocks: toolu_other",
    ),
    (
        "temperature with top_p on Sonnet 4.5",
        TOOL_LOOP,
        lambda d: d.update(temperature=0.7, top_p=0.9),
        "`temperature` and `top_p` cannot both be specified for this model",
    ),
    (
        "budget_tokens floor",
        THINKING_LOOP,
        lambda d: d["thinking"].update(budget_tokens=512),
        "greater than or equal to 1024",
    ),
    (
        "budget_tokens below max_tokens",
        THINKING_LOOP,
        lambda d: d.update(max_tokens=2048),
        "`max_tokens` must be greater than `thinking.budget_tokens`",
    ),
    (
        "thinking takes temperature 1 only",
        THINKING_LOOP,
        lambda d: d.update(temperature=0.5),
        "`temperature` may only be set to 1 when thinking is enabled",
    ),
    ("thinking refuses top_k", THINKING_LOOP, lambda d: d.update(top_k=40), "`top_k` must be unset"),
    (
        "thinking refuses forced tool use",
        THINKING_LOOP,
        lambda d: d.update(tool_choice={"type": "any"}),
        "Thinking may not be enabled when tool_choice forces tool use.",
    ),
    (
        "the answered assistant turn starts with its thinking block",
        THINKING_LOOP,
        lambda d: d["messages"][1]["content"].pop(0),
        "a final `assistant` message must start with a thinking block",
    ),
    (
        "thinking blocks come back unchanged",
        THINKING_LOOP,
        lambda d: d["messages"][1]["content"][0].update(thinking="edited"),
        "messages.1.content.0: Invalid `signature` in `thinking` block",
    ),
    (
        "no thinking in a final assistant turn without thinking",
        TOOL_LOOP,
        lambda d: d["messages"].append({"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]}),
        "When thinking is disabled",
    ),
    (
        "enabled thinking is refused on Opus 4.7",
        THINKING_LOOP,
        lambda d: d.update(model="claude-opus-4-7"),
        "thinking.type.enabled is not supported for this model",
    ),
    (
        "disabled thinking is refused on Mythos",
        TOOL_LOOP,
        lambda d: d.update(model="claude-mythos-5", thinking={"type": "disabled"}),
        "thinking.type.disabled is not supported for this model",
    ),
    (
        "adaptive thinking needs a 4.6 or later model",
        TOOL_LOOP,
        lambda d: d.update(model="claude-sonnet-4-5", thinking={"type": "adaptive"}),
        "thinking.type.adaptive is not supported for this model",
    ),
    (
        "adaptive thinking takes temperature 1 only",
        TOOL_LOOP,
        lambda d: d.update(model="claude-sonnet-4-6", thinking={"type": "adaptive"}, temperature=0.2),
        "only be set to 1 when thinking is enabled or in adaptive mode",
    ),
    (
        "metadata.user_id length",
        TOOL_LOOP,
        lambda d: d.update(metadata={"user_id": "u" * 257}),
        "metadata.user_id: String should have at most 256 characters",
    ),
    ("metadata keys", TOOL_LOOP, lambda d: d.update(metadata={"session": "s"}), "metadata.session: Extra inputs"),
]


MID_SYSTEM = {
    "model": "claude-opus-5-5",
    "max_tokens": 1024,
    "messages": [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "# Environment"}]},
    ],
}


@pytest.mark.parametrize("model", ["claude-opus-5-5", "claude-opus-4-8", "claude-fable-5"])
def test_anthropic_takes_a_mid_conversation_system_message_where_the_model_does(model: str) -> None:
    # Claude Code 2.1.332 sends one after its first user turn on its default model.
    assert rules_anthropic.check({**MID_SYSTEM, "model": model}, model) is None
    followed = copy.deepcopy(MID_SYSTEM)
    followed["messages"].append({"role": "assistant", "content": "ok"})
    assert rules_anthropic.check(followed, model) is None


@pytest.mark.parametrize(
    ("model", "change", "words"),
    [
        ("claude-sonnet-5", lambda d: None, 'Unexpected role "system"'),
        ("claude-opus-4-7", lambda d: None, 'Unexpected role "system"'),
        ("claude-opus-5-5", lambda d: d["messages"].pop(0), "must follow a user turn"),
        ("claude-opus-5-5", lambda d: d["messages"].append({"role": "user", "content": "x"}), "must follow a user"),
        ("claude-opus-5-5", lambda d: d["messages"].append(dict(d["messages"][1])), "must follow a user turn"),
        (
            "claude-opus-5-5",
            lambda d: d["messages"][1]["content"].append({"type": "image", "source": {}}),
            "only text blocks",
        ),
    ],
    ids=["sonnet 5", "opus 4.7", "first", "followed by user", "two in a row", "image"],
)
def test_anthropic_places_mid_conversation_system_messages(
    model: str, change: Callable[[dict[str, Any]], None], words: str
) -> None:
    doc = copy.deepcopy({**MID_SYSTEM, "model": model})
    change(doc)
    _refused(rules_anthropic.check, doc, model, words)


@pytest.mark.parametrize("good", [TOOL_LOOP, THINKING_LOOP], ids=["tool loop", "thinking tool loop"])
def test_anthropic_accepts_a_well_formed_loop(good: dict[str, Any]) -> None:
    assert rules_anthropic.check(good, good["model"]) is None


@pytest.mark.parametrize(("rule", "base", "change", "words"), ANTHROPIC_BAD, ids=[c[0] for c in ANTHROPIC_BAD])
def test_anthropic_refuses(
    rule: str, base: dict[str, Any], change: Callable[[dict[str, Any]], None], words: str
) -> None:
    doc = _apply(base, change)
    _refused(rules_anthropic.check, doc, doc["model"], words)


def test_anthropic_token_counting_takes_the_body_without_max_tokens() -> None:
    counted = _apply(TOOL_LOOP, lambda d: d.pop("max_tokens"))
    assert rules_anthropic.check_count(counted, "claude-sonnet-4-5") is None
    broken = _apply(counted, lambda d: d["messages"][2].update(content="never mind"))
    refusal = rules_anthropic.check_count(broken, "claude-sonnet-4-5")
    assert refusal is not None and "`tool_use` ids were found without `tool_result` blocks" in refusal.message


@pytest.mark.parametrize(
    ("model", "refused"),
    [
        ("claude-sonnet-4-20250514", False),
        ("claude-3-7-sonnet-20250219", False),
        ("claude-opus-4", False),
        ("claude-opus-4-1-20250805", True),
        ("claude-sonnet-4-5", True),
        ("claude-haiku-4-5", True),
        ("anthropic.claude-sonnet-4-6-v1:0", True),
        ("claude-opus-4-5@20251101", True),
        ("claude-sonnet-5", True),
    ],
)
def test_anthropic_temperature_with_top_p_per_family(model: str, refused: bool) -> None:
    doc = _apply(TOOL_LOOP, lambda d: d.update(temperature=0.7, top_p=0.9))
    assert (rules_anthropic.check(doc, model) is not None) is refused
    alone = _apply(TOOL_LOOP, lambda d: d.update(temperature=0.7))
    assert rules_anthropic.check(alone, model) is None


# --------------------------------------------------------------------------------------------------------------------
# OpenAI Chat Completions
# --------------------------------------------------------------------------------------------------------------------

CHAT_LOOP = {
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather? use a tool"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {"role": "user", "content": "thanks"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    "user": "u" * 64,
    "n": 1,
}

CHAT_BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("messages required", lambda d: d.pop("messages"), "Missing required parameter: 'messages'."),
    ("roles", lambda d: d["messages"][0].update(role="human"), "Invalid value: 'human'"),
    (
        "content required unless the assistant calls tools",
        lambda d: d["messages"][5].update(content=None),
        "Invalid value for 'content': expected a string, got null.",
    ),
    (
        "tool message answers a tool call",
        lambda d: d["messages"].insert(1, {"role": "tool", "tool_call_id": "call_0", "content": "x"}),
        "messages with role 'tool' must be a response to a preceeding message with 'tool_calls'",
    ),
    (
        "every tool call answered before the next message",
        lambda d: d["messages"].pop(4),
        "The following tool_call_ids did not have response messages: call_2",
    ),
    (
        "tool call id length",
        lambda d: (
            d["messages"][2]["tool_calls"][0].update(id="c" * 41),
            d["messages"][3].update(tool_call_id="c" * 41),
        ),
        "Invalid 'messages[2].tool_calls[0].id': string too long. Expected a string with maximum length 40",
    ),
    (
        "function name length",
        lambda d: d["tools"][0]["function"].update(name="f" * 65),
        "Invalid 'tools[0].function.name': string too long. Expected a string with maximum length 64",
    ),
    (
        "function name pattern",
        lambda d: d["tools"][0]["function"].update(name="mcp.tool"),
        "string does not match pattern",
    ),
    (
        "user length",
        lambda d: d.update(user="u" * 65),
        "Invalid 'user': string too long. Expected a string with maximum length 64, but got a string with length 65",
    ),
    ("safety_identifier length", lambda d: d.update(safety_identifier="s" * 70), "Invalid 'safety_identifier'"),
    (
        "parallel_tool_calls only with tools",
        lambda d: (d.pop("tools"), d.update(parallel_tool_calls=True)),
        "'parallel_tool_calls' is only allowed when 'tools' are specified.",
    ),
    ("n range", lambda d: d.update(n=129), "Expected a value <= 128"),
    ("n positive", lambda d: d.update(n=0), "Expected a value >= 1"),
    (
        "reasoning models refuse max_tokens",
        lambda d: d.update(model="gpt-5-mini", max_tokens=100),
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
    ),
    (
        "reasoning models take the default temperature only",
        lambda d: d.update(model="o3", temperature=0.2),
        "'temperature' does not support 0.2 with this model",
    ),
    (
        "reasoning models take no top_p",
        lambda d: d.update(model="gpt-5.1-codex", top_p=0.95),
        "Unsupported parameter: 'top_p' is not supported with this model.",
    ),
    (
        "stream_options only with stream",
        lambda d: d.update(stream_options={"include_usage": True}),
        "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
    ),
]


@pytest.mark.parametrize(
    "model", ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-3.5-turbo", "chatgpt-4o-latest", "gpt-5-chat-latest"]
)
def test_chat_refuses_reasoning_effort_without_reasoning(model: str) -> None:
    doc = _apply(CHAT_LOOP, lambda d: d.update(model=model, reasoning_effort="low"))
    _refused(rules_openai_chat.check, doc, model, "Unrecognized request argument supplied: reasoning_effort")


@pytest.mark.parametrize("model", ["o3-mini", "gpt-5", "gpt-5.1-codex", "azure/o4-mini"])
def test_chat_takes_reasoning_effort_on_reasoning_models(model: str) -> None:
    doc = _apply(CHAT_LOOP, lambda d: d.update(model=model, reasoning_effort="low"))
    assert rules_openai_chat.check(doc, model) is None
    assert (
        rules_openai_chat.check(_apply(doc, lambda d: d.update(model="gpt-4o", reasoning_effort=None)), "gpt-4o")
        is None
    )


def test_chat_accepts_a_well_formed_loop() -> None:
    assert rules_openai_chat.check(CHAT_LOOP, "gpt-4o") is None
    reasoning = _apply(CHAT_LOOP, lambda d: d.update(max_completion_tokens=100, temperature=1))
    assert rules_openai_chat.check(reasoning, "gpt-5") is None
    assert rules_openai_chat.check(_apply(CHAT_LOOP, lambda d: d.update(max_tokens=9)), "gpt-5-chat-latest") is None


@pytest.mark.parametrize(("rule", "change", "words"), CHAT_BAD, ids=[c[0] for c in CHAT_BAD])
def test_chat_refuses(rule: str, change: Callable[[dict[str, Any]], None], words: str) -> None:
    doc = _apply(CHAT_LOOP, change)
    _refused(rules_openai_chat.check, doc, doc["model"], words)


# --------------------------------------------------------------------------------------------------------------------
# The servers answer refusals in each API's error format
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstreamThread]:
    with FakeUpstreamThread() as fake:
        yield fake


def test_anthropic_refusal_reaches_the_sdk_as_a_bad_request(upstream: FakeUpstreamThread) -> None:
    client = anthropic.Anthropic(base_url=upstream.base_url, api_key="sk-ant-test", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"temperature": 0.5, "top_p": 0.9},
        )
    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "cannot both be specified" in body["error"]["message"]
    assert caught.value.request_id and caught.value.request_id.startswith("req_")


def test_anthropic_thinking_round_trip_through_the_fake(upstream: FakeUpstreamThread) -> None:
    """The fake answers enabled thinking with a signed thinking block, and takes it back on the next turn."""
    client = anthropic.Anthropic(base_url=upstream.base_url, api_key="sk-ant-test", max_retries=0)
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    asked: Any = [{"role": "user", "content": "weather? use a tool"}]
    first = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=2048, thinking=thinking, tools=tools, messages=asked
    )
    assert [b.type for b in first.content] == ["thinking", "text", "tool_use"]
    tool_use = first.content[2]
    assert tool_use.type == "tool_use"
    result: Any = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]}
    history: Any = [*asked, {"role": "assistant", "content": [b.model_dump() for b in first.content]}, result]
    second = client.messages.create(
        model="claude-sonnet-4-5", max_tokens=2048, thinking=thinking, tools=tools, messages=history
    )
    assert second.stop_reason == "end_turn"
    with client.messages.stream(
        model="claude-sonnet-4-5", max_tokens=2048, thinking=thinking, tools=tools, messages=asked
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].type == "thinking" and streamed.content[0].signature
    without: Any = [*asked, {"role": "assistant", "content": [b.model_dump() for b in first.content[1:]]}, result]
    with pytest.raises(anthropic.BadRequestError, match="must start with a thinking block"):
        client.messages.create(
            model="claude-sonnet-4-5", max_tokens=2048, thinking=thinking, tools=tools, messages=without
        )


def test_chat_refusal_reaches_the_sdk_with_param_and_code(upstream: FakeUpstreamThread) -> None:
    client = openai.OpenAI(base_url=upstream.base_url + "/v1", api_key="sk-test", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], user="u" * 150)
    assert caught.value.status_code == 400
    assert caught.value.param == "user" and caught.value.code == "string_above_max_length"
    assert caught.value.type == "invalid_request_error"


# --------------------------------------------------------------------------------------------------------------------
# OpenAI Responses
# --------------------------------------------------------------------------------------------------------------------

RESPONSES_LOOP = {
    "model": "gpt-5",
    "store": False,
    "include": ["reasoning.encrypted_content"],
    "input": [
        {"role": "user", "content": "weather? use a tool"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA..."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
    ],
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
    "max_output_tokens": 16,
    "safety_identifier": "s" * 64,
}
_NO_STORE: dict[str, set[str]] = {}

RESPONSES_BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("input required", lambda d: d.pop("input"), "Missing required parameter: 'input'."),
    (
        "function_call_output answers a function_call",
        lambda d: d["input"].pop(2),
        "No tool call found for function call output with call_id call_1.",
    ),
    (
        "call_id length",
        lambda d: (d["input"][2].update(call_id="c" * 65), d["input"][3].update(call_id="c" * 65)),
        "Invalid 'input[2].call_id': string too long. Expected a string with maximum length 64",
    ),
    (
        "reasoning items carry encrypted content without store",
        lambda d: d["input"][1].pop("encrypted_content"),
        "Item with id 'rs_1' not found. Items are not persisted when `store` is set to false.",
    ),
    ("previous_response_id exists", lambda d: d.update(previous_response_id="resp_x"), "Previous response with id"),
    ("safety_identifier length", lambda d: d.update(safety_identifier="s" * 65), "Invalid 'safety_identifier'"),
    ("user length", lambda d: d.update(user="u" * 150), "Invalid 'user': string too long"),
    ("function name pattern", lambda d: d["tools"][0].update(name="a b"), "Invalid 'tools[0].name'"),
    ("max_output_tokens floor", lambda d: d.update(max_output_tokens=10), "Expected a value >= 16, but got 10"),
    ("reasoning models' temperature", lambda d: d.update(temperature=0.3), "'temperature' does not support 0.3"),
    ("reasoning models' top_p", lambda d: d.update(top_p=0.9), "'top_p' is not supported with this model"),
    (
        "no include_usage in stream_options",
        lambda d: d.update(stream=True, stream_options={"include_usage": True}),
        "Unknown parameter: 'stream_options.include_usage'.",
    ),
]


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4.1-mini", "chatgpt-4o-latest", "gpt-5-chat-latest"])
def test_responses_refuses_reasoning_without_reasoning(model: str) -> None:
    doc = _apply(RESPONSES_LOOP, lambda d: d.update(model=model, reasoning={"effort": "medium", "summary": "auto"}))
    doc["input"].pop(1)  # models without reasoning give no reasoning items to send back
    refusal = rules_responses.check(doc, model, _NO_STORE.get)
    assert refusal is not None and refusal.param == "reasoning.effort" and refusal.code == "unsupported_parameter"
    assert "Unsupported parameter: 'reasoning.effort' is not supported with this model." in refusal.message
    assert rules_responses.check(_apply(doc, lambda d: d.pop("reasoning")), model, _NO_STORE.get) is None


def test_responses_accepts_a_well_formed_loop() -> None:
    assert rules_responses.check(RESPONSES_LOOP, "gpt-5", _NO_STORE.get) is None
    reasoning = _apply(RESPONSES_LOOP, lambda d: d.update(reasoning={"effort": "high"}))
    assert rules_responses.check(reasoning, "gpt-5", _NO_STORE.get) is None
    # An output may answer a call of the stored response previous_response_id names.
    chained = {"model": "gpt-5", "previous_response_id": "resp_1", "input": [RESPONSES_LOOP["input"][3]]}
    assert rules_responses.check(chained, "gpt-5", {"resp_1": {"call_1"}}.get) is None
    assert rules_responses.check(chained, "gpt-5", {"resp_1": {"call_9"}}.get) is not None


@pytest.mark.parametrize(("rule", "change", "words"), RESPONSES_BAD, ids=[c[0] for c in RESPONSES_BAD])
def test_responses_refuses(rule: str, change: Callable[[dict[str, Any]], None], words: str) -> None:
    doc = _apply(RESPONSES_LOOP, change)
    refusal = rules_responses.check(doc, doc["model"], _NO_STORE.get)
    assert refusal is not None and words in refusal.message, refusal


def test_responses_server_chains_previous_response_calls(upstream: FakeUpstreamThread) -> None:
    client = openai.OpenAI(base_url=upstream.base_url + "/v1", api_key="sk-test", max_retries=0)
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    first = client.responses.create(model="gpt-4.1", input="weather? use a tool", tools=tools)
    call = next(item for item in first.output if item.type == "function_call")
    answer: Any = [{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
    second = client.responses.create(model="gpt-4.1", previous_response_id=first.id, input=answer, tools=tools)
    assert second.status == "completed"
    stray: Any = [{"type": "function_call_output", "call_id": "call_unknown", "output": "sunny"}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="gpt-4.1", previous_response_id=first.id, input=stray)
    assert caught.value.param == "input" and "No tool call found" in caught.value.message


# --------------------------------------------------------------------------------------------------------------------
# Gemini
# --------------------------------------------------------------------------------------------------------------------

GEMINI_SIGNATURE = sign(rules_gemini.SIGNATURE_KIND, "get_weather")
GEMINI_LOOP = {
    "contents": [
        {"role": "user", "parts": [{"text": "weather? use a tool"}]},
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": GEMINI_SIGNATURE}],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "sunny"}}}]},
    ],
    "tools": [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}],
    "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH", "includeThoughts": True}},
}

GEMINI_BAD: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    ("contents required", "gemini-2.5-flash", lambda d: d.update(contents=[]), "contents is not specified"),
    ("roles", "gemini-2.5-flash", lambda d: d["contents"][0].update(role="system"), "Please use a valid role"),
    (
        "non-empty parts",
        "gemini-2.5-flash",
        lambda d: d["contents"].insert(1, {"role": "model", "parts": []}),
        "* GenerateContentRequest.contents[1].parts: contents.parts must not be empty.",
    ),
    (
        "function response after a function call turn",
        "gemini-2.5-flash",
        lambda d: d["contents"].pop(1),
        "function response turn comes immediately after a function call turn",
    ),
    (
        "function call after a user turn",
        "gemini-2.5-flash",
        lambda d: d["contents"].pop(0),
        "function call turn comes immediately after a user turn",
    ),
    (
        "one response per call",
        "gemini-2.5-flash",
        lambda d: d["contents"][2]["parts"].append(dict(d["contents"][2]["parts"][0])),
        "the number of function response parts is equal to the number of function call parts",
    ),
    (
        "Gemini 3 needs the thought signature back",
        "gemini-3-pro-preview",
        lambda d: d["contents"][1]["parts"][0].pop("thoughtSignature"),
        "Function call is missing a thought_signature in functionCall parts.",
    ),
    (
        "signatures come back unchanged",
        "gemini-2.5-flash",
        lambda d: d["contents"][1]["parts"][0].update(thoughtSignature="forged"),
        "Corrupted thought signature.",
    ),
    (
        "thinkingLevel needs Gemini 3",
        "gemini-2.5-flash",
        lambda d: None,
        "Thinking level is not supported for this model.",
    ),
    (
        "thinkingLevel or thinkingBudget",
        "gemini-3-flash-preview",
        lambda d: d["generationConfig"]["thinkingConfig"].update(thinkingBudget=1024),
        "only set one of thinking budget and thinking level",
    ),
    (
        "function names",
        "gemini-3-flash-preview",
        lambda d: d["tools"][0]["functionDeclarations"][0].update(name="1tool"),
        "function_declarations[0].name: Invalid function name.",
    ),
]


def test_gemini_accepts_a_well_formed_loop() -> None:
    assert rules_gemini.check(GEMINI_LOOP, "gemini-3-pro-preview") is None
    unsigned = _apply(GEMINI_LOOP, lambda d: d["contents"][1]["parts"][0].pop("thoughtSignature"))
    assert rules_gemini.check(_apply(unsigned, lambda d: d.pop("generationConfig")), "gemini-2.5-flash") is None
    skipped = _apply(
        GEMINI_LOOP, lambda d: d["contents"][1]["parts"][0].update(thoughtSignature=rules_gemini.SKIP_SIGNATURE)
    )
    assert rules_gemini.check(skipped, "gemini-3-pro-preview") is None
    # Earlier turns (before the last user text) are not validated for signatures.
    later = _apply(
        unsigned,
        lambda d: d["contents"].extend(
            [{"role": "model", "parts": [{"text": "sunny"}]}, {"role": "user", "parts": [{"text": "thanks"}]}]
        ),
    )
    assert rules_gemini.check(later, "gemini-3-pro-preview") is None


@pytest.mark.parametrize(("rule", "model", "change", "words"), GEMINI_BAD, ids=[c[0] for c in GEMINI_BAD])
def test_gemini_refuses(rule: str, model: str, change: Callable[[dict[str, Any]], None], words: str) -> None:
    _refused(rules_gemini.check, _apply(GEMINI_LOOP, change), model, words)


def test_gemini_server_signs_gemini_3_calls_and_refuses_in_google_format(upstream: FakeUpstreamThread) -> None:
    client = genai.Client(api_key="g-test", http_options=genai_types.HttpOptions(base_url=upstream.base_url))
    tools = [
        genai_types.Tool(
            function_declarations=[
                genai_types.FunctionDeclaration(
                    name="get_weather", parameters_json_schema={"type": "object", "properties": {}}
                )
            ]
        )
    ]
    config = genai_types.GenerateContentConfig(tools=tools)
    first = client.models.generate_content(model="gemini-3-pro-preview", contents="weather? use a tool", config=config)
    called = first.candidates[0].content  # type: ignore[index]
    assert called is not None and called.parts and called.parts[0].thought_signature
    answer = genai_types.Content(
        role="user", parts=[genai_types.Part.from_function_response(name="get_weather", response={"sky": "sunny"})]
    )
    history = [genai_types.Content(role="user", parts=[genai_types.Part(text="weather? use a tool")]), called, answer]
    assert client.models.generate_content(model="gemini-3-pro-preview", contents=history, config=config).text
    bare = called.model_copy(deep=True)
    assert bare.parts
    bare.parts[0].thought_signature = None
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="gemini-3-pro-preview", contents=[history[0], bare, answer], config=config)
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"
    assert "missing a thought_signature" in str(caught.value.message)


# --------------------------------------------------------------------------------------------------------------------
# Bedrock Converse
# --------------------------------------------------------------------------------------------------------------------

CONVERSE_LOOP = {
    "messages": [
        {"role": "user", "content": [{"text": "weather? use a tool"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "sunny"}]}}]},
    ],
    "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}]},
}

CONVERSE_BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("start with user", lambda d: d["messages"].pop(0), "A conversation must start with a user message."),
    (
        "alternate roles",
        lambda d: d["messages"].append({"role": "user", "content": [{"text": "more"}]}),
        "A conversation must alternate between user and assistant roles.",
    ),
    (
        "roles",
        lambda d: d["messages"][0].update(role="system"),
        "Member must satisfy enum value set: [user, assistant]",
    ),
    ("block members", lambda d: d["messages"][0]["content"][0].update(type="text"), "Malformed input request"),
    (
        "toolResult for every toolUse",
        lambda d: d["messages"][2].update(content=[{"text": "nothing"}]),
        "Expected toolResult blocks at messages.2.content for the following Ids: tooluse_1",
    ),
    (
        "toolResult answers the previous toolUse",
        lambda d: d["messages"][2]["content"].append({"toolResult": {"toolUseId": "tooluse_9", "content": []}}),
        "exceeds the number of toolUse blocks of previous turn",
    ),
    (
        "tool names",
        lambda d: d["toolConfig"]["tools"][0]["toolSpec"].update(name="get.weather"),
        "toolConfig.tools.1.member.toolSpec.name",
    ),
]


def test_converse_accepts_a_well_formed_loop() -> None:
    assert rules_converse.check(CONVERSE_LOOP) is None


@pytest.mark.parametrize(("rule", "change", "words"), CONVERSE_BAD, ids=[c[0] for c in CONVERSE_BAD])
def test_converse_refuses(rule: str, change: Callable[[dict[str, Any]], None], words: str) -> None:
    refusal = rules_converse.check(_apply(CONVERSE_LOOP, change))
    assert refusal is not None and words in refusal.message, refusal


# --------------------------------------------------------------------------------------------------------------------
# What the real agents sent (tests/fixtures/*) passes the rules of their own vendor
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("claude_code/messages_request.json", "claude-sonnet-4-6"),
        ("gemini_cli/stream_generate_content_request.json", "gemini-2.5-flash"),
        ("gemini_cli/stream_generate_content_tool_result.json", "gemini-2.5-flash"),
        ("gemini_cli/router_generate_content_request.json", "gemini-3.5-flash-lite"),
        ("gemini_cli/stream_generate_content_request_gemini3.json", "gemini-3.8-flash"),
        ("codex/responses_request.json", "gpt-5.5"),
        ("codex/responses_request_tool_result.json", "gpt-5.5"),
    ],
)
def test_recorded_agent_requests_pass_their_own_vendors_rules(path: str, model: str) -> None:
    doc = json.loads((FIXTURES / path).read_bytes())
    if path.startswith("claude_code"):
        assert rules_anthropic.check(doc, model) is None
    elif path.startswith("gemini_cli"):
        assert rules_gemini.check(doc, model) is None
    else:
        assert rules_responses.check(doc, model, _NO_STORE.get) is None
