"""What the OpenAI Responses API (``POST /v1/responses``) refuses.

``check(doc, model, known_calls)`` returns the first refusal, or None; ``known_calls`` answers which function-call
ids a stored response (``previous_response_id``) holds."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.fakes import shapes
from tests.fakes.rules_kit import Refusal, as_dict, as_list
from tests.fakes.rules_openai_chat import is_non_reasoning_model, is_reasoning_model, reasoning_sampling

KnownCalls = Callable[[str], set[str] | None]  # previous_response_id -> its call ids (None: no such response)
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")


def _too_long(param: str, value: str, limit: int) -> Refusal:
    return Refusal(
        f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, but got a string with "
        f"length {len(value)} instead.",
        param,
        "string_above_max_length",
    )


def _items(doc: dict[str, Any]) -> list[dict[str, Any]]:
    given = doc.get("input")
    return [i for i in given if isinstance(i, dict)] if isinstance(given, list) else []


def input_present(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # Without a stored prompt or conversation, a response needs `input` (API reference, "Create a model response",
    # https://platform.openai.com/docs/api-reference/responses/create).
    if "input" not in doc and "prompt" not in doc and "conversation" not in doc:
        return Refusal("Missing required parameter: 'input'.", "input", "missing_required_parameter")
    return None


def stream_options_of_responses(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # Responses' stream_options has include_obfuscation only (API reference); Chat's include_usage is unknown here.
    options = doc.get("stream_options")
    if isinstance(options, dict) and "include_usage" in options:
        return Refusal(
            "Unknown parameter: 'stream_options.include_usage'.", "stream_options.include_usage", "unknown_parameter"
        )
    return None


def function_call_outputs(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # A function_call_output answers a function_call in the same input or in the response previous_response_id names:
    # "No tool call found for function call output with call_id call_uelfkqtHfJDC4Btqeoozq82e." (param "input";
    # continuedev/continue#10092, agentscope-ai/AgentTeams#299; function-calling guide,
    # https://platform.openai.com/docs/guides/function-calling). call_id is at most 64 characters: "Invalid
    # 'input[95].call_id': string too long. Expected a string with maximum length 64, but got a string with length
    # 116 instead." (AnswerDotAI/fastllm#45, orchidfiles/ungate#26).
    items = _items(doc)
    calls: set[str] = set()
    previous = doc.get("previous_response_id")
    if isinstance(previous, str):
        stored = known(previous)
        if stored is None:
            return Refusal(
                f"Previous response with id '{previous}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            )
        calls |= stored
    for n, item in enumerate(items):
        kind = item.get("type")
        call_id = item.get("call_id")
        if kind in ("function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"):
            if not isinstance(call_id, str):
                return Refusal(
                    f"Missing required parameter: 'input[{n}].call_id'.",
                    f"input[{n}].call_id",
                    "missing_required_parameter",
                )
            if len(call_id) > 64:
                return _too_long(f"input[{n}].call_id", call_id, 64)
        if kind in ("function_call", "custom_tool_call"):
            calls.add(call_id)
        elif kind in ("function_call_output", "custom_tool_call_output") and call_id not in calls:
            return Refusal(f"No tool call found for function call output with call_id {call_id}.", "input")
    return None


def reasoning_items(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # With store false nothing is kept server-side, so a reasoning item must carry its encrypted_content (asked for
    # with include: ["reasoning.encrypted_content"]): otherwise "Item with id 'rs_...' not found. Items are not
    # persisted when `store` is set to false. Try again with `store` set to true, or remove this item from your
    # input." (404; anomalyco/opencode#7724, #8987, can1357/oh-my-pi#41; reasoning guide, "Encrypted reasoning
    # items", https://platform.openai.com/docs/guides/reasoning).
    if doc.get("store") is not False:
        return None
    for item in _items(doc):
        if item.get("type") == "reasoning" and not item.get("encrypted_content"):
            return Refusal(
                f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is set to false. "
                "Try again with `store` set to true, or remove this item from your input.",
                "input",
                status=404,
            )
    return None


def end_user_ids(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # safety_identifier (and the legacy user): at most 64 characters, as for Chat Completions (rules_openai_chat).
    for param in ("user", "safety_identifier"):
        value = doc.get(param)
        if isinstance(value, str) and len(value) > 64:
            return _too_long(param, value, 64)
    return None


def function_names(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # Function tools: name a-z, A-Z, 0-9, underscores and dashes, at most 64 (API reference, tools[].name).
    for n, tool in enumerate(as_list(doc.get("tools"))):
        tool = as_dict(tool)
        if tool.get("type") != "function":
            continue
        name = tool.get("name")
        param = f"tools[{n}].name"
        if not isinstance(name, str):
            return Refusal(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
        if len(name) > 64:
            return _too_long(param, name, 64)
        if not _FUNCTION_NAME.match(name):
            return Refusal(
                f"Invalid '{param}': string does not match pattern. Expected a string that matches the pattern "
                "'^[a-zA-Z0-9_-]+$'.",
                param,
                "invalid_value",
            )
    return None


def output_token_floor(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got 10 instead."
    # (vectorize-io/hindsight#58, braintrustdata/lingua#186, QuantumNous/new-api#2438).
    value = doc.get("max_output_tokens")
    if isinstance(value, int) and value < 16:
        return Refusal(
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, but got {value} "
            "instead.",
            "max_output_tokens",
            "integer_below_min_value",
        )
    return None


def reasoning_model_sampling(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # Reasoning models take no sampling parameters (reasoning guide, https://platform.openai.com/docs/guides/
    # reasoning): as on Chat Completions (rules_openai_chat.reasoning_sampling), temperature 1 only and no top_p.
    return reasoning_sampling(doc) if is_reasoning_model(model) else None


def field_types(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # Every field the fakes read has the JSON type the API's reference gives it (tests.fakes.shapes cites the typed
    # request params): a wrong one is the API's 400, never a crash of the fake.
    wrong = shapes.wrong_field(doc, shapes.OPENAI_RESPONSES)
    return None if wrong is None else Refusal(shapes.openai_message(wrong))


def reasoning_needs_reasoning(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    # reasoning.effort to a model without reasoning (gpt-4o, gpt-4.1): "Unsupported parameter: 'reasoning.effort' is
    # not supported with this model." with param reasoning.effort and code unsupported_parameter
    # (RageAgainstThePixel/OpenAI-DotNet#500 on gpt-4o, BoundaryML/baml#2708 on gpt-4.1, BerriAI/litellm#38842: Codex
    # on gpt-4o through a proxy that forwarded it).
    effort = as_dict(doc.get("reasoning")).get("effort")
    if effort is not None and is_non_reasoning_model(model):
        return Refusal(
            "Unsupported parameter: 'reasoning.effort' is not supported with this model.",
            "reasoning.effort",
            "unsupported_parameter",
        )
    return None


RULES = (
    field_types,
    input_present,
    stream_options_of_responses,
    function_call_outputs,
    reasoning_items,
    end_user_ids,
    function_names,
    output_token_floor,
    reasoning_model_sampling,
    reasoning_needs_reasoning,
)


def check(doc: dict[str, Any], model: str, known: KnownCalls) -> Refusal | None:
    for rule in RULES:
        refused = rule(doc, model, known)
        if refused is not None:
            return refused
    return None
