"""What OpenAI Chat Completions (``POST /v1/chat/completions``, and Azure OpenAI's deployments of it) refuses.

Each refusal carries OpenAI's ``message``, ``param`` and ``code`` as its error objects have them (quoted below from
the API's answers in public issues). ``check(doc, model)`` returns the first refusal, or None."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes import shapes
from tests.fakes.rules_kit import Refusal, as_dict, as_list, first_refusal

# Function names: "Must be a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum length of 64" (API
# reference, tools[].function.name, https://platform.openai.com/docs/api-reference/chat/create).
_FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Reasoning models (o-series, GPT-5 except the -chat variants): "Unsupported parameter: 'max_tokens' is not supported
# with this model. Use 'max_completion_tokens' instead." (gollm#33 on o1/o3-mini, ComfyUI-Griptape#312 on gpt-5,
# ESPHomeDesigner#379 on gpt-5.4) and "Unsupported value: 'temperature' does not support 0.7 with this model. Only
# the default (1) value is supported." (OpenHands#4131 on o1-mini, llmcomp#69 on gpt-5.4, qwen-code#921 on
# gpt-5-mini); the reasoning guide (https://platform.openai.com/docs/guides/reasoning) lists the parameters they take.
_REASONING = re.compile(r"(?:^|[/.:])(?:o\d(?:-[a-z]+)?|gpt-5(?:\.\d+)?(?!-chat)(?:-[a-z]+)*)(?:-\d{4}-\d{2}-\d{2})?$")


# Models without reasoning: GPT-3.5, the GPT-4 family (gpt-4, -turbo, 4o, 4.1 and their -mini/-nano), chatgpt-4o-latest
# and the GPT-5 -chat variants (the reasoning guide, https://platform.openai.com/docs/guides/reasoning, names the
# o-series and GPT-5 as the reasoning models; the API reference says of reasoning_effort "o-series models only" and
# later "reasoning models only").
_NON_REASONING = re.compile(r"(?:^|[/.:])(?:gpt-3\.5|gpt-4|chatgpt-|gpt-5(?:\.\d+)?-chat)")


def is_reasoning_model(model: str) -> bool:
    return _REASONING.search(model) is not None


def is_non_reasoning_model(model: str) -> bool:
    """An OpenAI model known to have no reasoning (an unknown name is neither: the fakes refuse only what they know)."""
    return not is_reasoning_model(model) and _NON_REASONING.search(model) is not None


def _too_long(param: str, value: str, limit: int) -> Refusal:
    return Refusal(
        f"Invalid '{param}': string too long. Expected a string with maximum length {limit}, but got a string with "
        f"length {len(value)} instead.",
        param,
        "string_above_max_length",
    )


def messages_present(doc: dict[str, Any], model: str) -> Refusal | None:
    # `messages` is required (API reference); the fixture error_invalid_request.json is OpenAI's answer.
    if not isinstance(doc.get("messages"), list):
        return Refusal("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not doc["messages"]:
        return Refusal(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            "empty_array",
        )
    return None


def roles(doc: dict[str, Any], model: str) -> Refusal | None:
    # Message roles of the API reference: developer, system, user, assistant, tool (and the deprecated function).
    for n, message in enumerate(doc["messages"]):
        role = as_dict(message).get("role")
        if role not in _ROLES:
            return Refusal(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', "
                "and 'developer'.",
                f"messages[{n}].role",
                "invalid_value",
            )
    return None


def message_content(doc: dict[str, Any], model: str) -> Refusal | None:
    # An assistant message's content is "Required unless tool_calls or function_call is specified" (API reference,
    # quoted in huggingface/text-generation-inference#3021), and every other role needs one: "Invalid value for
    # 'content': expected a string, got null." with param "messages.[0].content" (langchain-ai/langchainjs#4153,
    # docker/docker-agent#63, run-llama/llama_index#17555).
    for n, raw in enumerate(doc["messages"]):
        message = as_dict(raw)
        if message.get("content") is not None:
            continue
        if message.get("role") == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            continue
        return Refusal("Invalid value for 'content': expected a string, got null.", f"messages.[{n}].content")
    return None


def tool_messages_answer_calls(doc: dict[str, Any], model: str) -> Refusal | None:
    # A tool message answers a tool_call of the assistant message before it, and every tool_call is answered before
    # the next non-tool message: "Invalid parameter: messages with role 'tool' must be a response to a preceeding
    # message with 'tool_calls'." and "An assistant message with 'tool_calls' must be followed by tool messages
    # responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: call_..."
    # (aliasrobotics/cai#111, BerriAI/litellm#10083, agno-agi/agno#3105; function-calling guide,
    # https://platform.openai.com/docs/guides/function-calling).
    pending: list[str] = []
    pending_at = -1
    for n, raw in enumerate(doc["messages"]):
        message = as_dict(raw)
        if message.get("role") == "tool":
            call = message.get("tool_call_id")
            if pending_at < 0 or call not in pending:
                return Refusal(
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    "'tool_calls'.",
                    f"messages.[{n}].role",
                )
            pending.remove(call)
            continue
        if pending:
            return Refusal(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
                f"messages.[{pending_at}].role",
            )
        pending, pending_at = [], -1
        calls = as_list(message.get("tool_calls")) if message.get("role") == "assistant" else []
        for m, call in enumerate(calls):
            call_id = as_dict(call).get("id")
            if not isinstance(call_id, str):
                return Refusal(
                    f"Missing required parameter: 'messages[{n}].tool_calls[{m}].id'.",
                    f"messages[{n}].tool_calls[{m}].id",
                    "missing_required_parameter",
                )
            # Tool call ids are at most 40 characters: "Invalid 'messages[2].tool_calls[0].id': string too long.
            # Expected a string with maximum length 40, but got a string with length 44 instead."
            # (Portkey-AI/gateway#1062, vercel/ai#8132, BerriAI/litellm#17343; param messages[10].tool_calls[0].id and
            # code string_above_max_length in agno-agi/agno#5382, microsoft/autogen#6377). The API reference gives no
            # limit, and vercel/ai#17233 (2026-07) saw a 51-character id accepted: the fake keeps the stricter rule
            # the gateway must meet for deployments that still apply it.
            if len(call_id) > 40:
                return _too_long(f"messages[{n}].tool_calls[{m}].id", call_id, 40)
            pending.append(call_id)
        if pending:
            pending_at = n
    # A conversation may end on an unanswered tool call only if nothing follows it: the model would answer it.
    if pending:
        return Refusal(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
            f"'tool_call_id'. The following tool_call_ids did not have response messages: {', '.join(pending)}",
            f"messages.[{pending_at}].role",
        )
    return None


def function_names(doc: dict[str, Any], model: str) -> Refusal | None:
    # "Invalid 'tools[11].function.name': string too long. Expected a string with maximum length 64, but got a string
    # with length 74 instead." (home-assistant/core#121325); the pattern is the API reference's.
    for n, tool in enumerate(as_list(doc.get("tools"))):
        function = as_dict(as_dict(tool).get("function"))
        name = function.get("name")
        param = f"tools[{n}].function.name"
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


def parallel_tool_calls_need_tools(doc: dict[str, Any], model: str) -> Refusal | None:
    # "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified."
    # (param parallel_tool_calls; Upsonic/Upsonic#323, camel-ai/camel#3706, openai/swarm#32).
    if doc.get("parallel_tool_calls") is not None and not doc.get("tools"):
        return Refusal(
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are "
            "specified.",
            "parallel_tool_calls",
            "invalid_value",
        )
    return None


def end_user_ids(doc: dict[str, Any], model: str) -> Refusal | None:
    # `safety_identifier`: "a string that uniquely identifies each user, with a maximum length of 64 characters"
    # (API reference, mirrored at https://learn.microsoft.com/en-ie/dotnet/api/azure.ai.agentserver.responses.models.
    # responseobject.safetyidentifier); the legacy `user` it supersedes (https://help.openai.com/en/articles/
    # 5428082-how-to-incorporate-a-safety-identifier) is held to the same 64 characters (maximhq/bifrost#1000:
    # "OpenAI enforces a 64 character maximum on the user field"; mnfst/llm-gateway#2789; issue 13 of this project:
    # Claude Code's ~150-character metadata.user_id forwarded as `user` is refused).
    for param in ("user", "safety_identifier"):
        value = doc.get(param)
        if isinstance(value, str) and len(value) > 64:
            return _too_long(param, value, 64)
    return None


def choices_count(doc: dict[str, Any], model: str) -> Refusal | None:
    # `n`: "How many chat completion choices to generate", an integer from 1 to 128 (API reference).
    n = doc.get("n")
    if n is None:
        return None
    if not isinstance(n, int) or n < 1:
        return Refusal(
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} instead.",
            "n",
            "integer_below_min_value",
        )
    if n > 128:
        return Refusal(
            f"Invalid 'n': integer above maximum value. Expected a value <= 128, but got {n} instead.",
            "n",
            "integer_above_max_value",
        )
    return None


def reasoning_model_parameters(doc: dict[str, Any], model: str) -> Refusal | None:
    if not is_reasoning_model(model):
        return None
    if doc.get("max_tokens") is not None:
        return Refusal(
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' "
            "instead.",
            "max_tokens",
            "unsupported_parameter",
        )
    return reasoning_sampling(doc)


def reasoning_sampling(doc: dict[str, Any]) -> Refusal | None:
    """Reasoning models keep the default sampling: temperature 1 only, and no top_p ("Unsupported parameter: 'top_p'
    is not supported with this model." on gpt-5, lfnovo/open-notebook#107, HIllya51/LunaTranslator#1842, on GPT 5.1
    Codex Max, microsoft/vscode#282170; the default 1 goes through, as users report)."""
    temperature = doc.get("temperature")
    if temperature is not None and temperature != 1:
        return Refusal(
            f"Unsupported value: 'temperature' does not support {temperature} with this model. Only the default (1) "
            "value is supported.",
            "temperature",
            "unsupported_value",
        )
    top_p = doc.get("top_p")
    if top_p is not None and top_p != 1:
        return Refusal(
            "Unsupported parameter: 'top_p' is not supported with this model.", "top_p", "unsupported_parameter"
        )
    return None


def reasoning_effort_needs_reasoning(doc: dict[str, Any], model: str) -> Refusal | None:
    # reasoning_effort to a model without reasoning: "Unrecognized request argument supplied: reasoning_effort" with
    # param and code null (davidmigloz/langchain_dart#712 on gpt-4o-mini; avante-corp/avante.nvim#1359 on gpt-4o;
    # API reference: reasoning_effort is for reasoning models only).
    if doc.get("reasoning_effort") is not None and is_non_reasoning_model(model):
        return Refusal("Unrecognized request argument supplied: reasoning_effort")
    return None


def stream_options_need_stream(doc: dict[str, Any], model: str) -> Refusal | None:
    # "The 'stream_options' parameter is only allowed when 'stream' is enabled." (BerriAI/litellm#5803; API
    # reference: stream_options, "Only set this when you set stream: true").
    if doc.get("stream_options") is not None and doc.get("stream") is not True:
        return Refusal("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
    return None


def field_types(doc: dict[str, Any], model: str) -> Refusal | None:
    # Every field the fakes read has the JSON type the API's reference gives it (tests.fakes.shapes cites the typed
    # request params): a wrong one is the API's 400, never a crash of the fake.
    wrong = shapes.wrong_field(doc, shapes.OPENAI_CHAT, null_content=True)
    return None if wrong is None else Refusal(shapes.openai_message(wrong))


RULES = (
    field_types,
    messages_present,
    roles,
    message_content,
    tool_messages_answer_calls,
    function_names,
    parallel_tool_calls_need_tools,
    end_user_ids,
    choices_count,
    reasoning_model_parameters,
    reasoning_effort_needs_reasoning,
    stream_options_need_stream,
)


def check(doc: dict[str, Any], model: str) -> Refusal | None:
    """The first rule of Chat Completions that ``doc`` (sent for ``model``) breaks, or None."""
    return first_refusal(RULES, doc, model)
