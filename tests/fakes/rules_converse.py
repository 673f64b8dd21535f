"""What Amazon Bedrock's Converse API (``/model/{id}/converse``, ``/converse-stream``) refuses: a 400
``ValidationException`` with the message below.

``check(doc)`` returns the first refusal, or None."""

from __future__ import annotations

import itertools
import re
from typing import Any

from tests.fakes.rules_kit import Refusal, as_dict, as_list, first_refusal

# ContentBlock is a union keyed by member name (API reference, https://docs.aws.amazon.com/bedrock/latest/
# APIReference/API_runtime_ContentBlock.html).
_BLOCKS = {
    "text",
    "image",
    "document",
    "video",
    "toolUse",
    "toolResult",
    "guardContent",
    "cachePoint",
    "reasoningContent",
    "citationsContent",
    "searchResult",
}
# ToolSpecification.name and ToolUseBlock.toolUseId: length 1 to 64, pattern [a-zA-Z0-9_-]+
# (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ToolSpecification.html,
# API_runtime_ToolUseBlockStart.html).
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in as_list(doc.get("messages")) if isinstance(m, dict)]


def _content(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in as_list(message.get("content")) if isinstance(b, dict)]


def message_shape(doc: dict[str, Any]) -> Refusal | None:
    # Message: role (user | assistant) and content, a list of ContentBlock unions with exactly one member
    # (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Message.html).
    if not isinstance(doc.get("messages"), list):
        return Refusal(
            "1 validation error detected: Value null at 'messages' failed to satisfy constraint: "
            "Member must not be null"
        )
    for n, message in enumerate(_messages(doc)):
        if message.get("role") not in ("user", "assistant"):
            return Refusal(
                f"1 validation error detected: Value '{message.get('role')}' at 'messages.{n + 1}.member.role' failed "
                "to satisfy constraint: Member must satisfy enum value set: [user, assistant]"
            )
        for block in _content(message):
            if len(block) != 1 or next(iter(block)) not in _BLOCKS:
                return Refusal("Malformed input request, please reformat your input and try again.")
    return None


def alternation(doc: dict[str, Any]) -> Refusal | None:
    # "A conversation must start with a user message. Try again with a conversation that starts with a user message."
    # (langgenius/dify#12340, elastic/kibana#246393) and "A conversation must alternate between user and assistant
    # roles. Make sure the conversation alternates between user and assistant roles and try again."
    # (langchain-ai/langchain-aws#130, Portkey-AI/gateway#748; "Bedrock validates strict user/assistant alternation").
    messages = _messages(doc)
    if messages and messages[0].get("role") != "user":
        return Refusal(
            "A conversation must start with a user message. "
            "Try again with a conversation that starts with a user message."
        )
    for before, after in itertools.pairwise(messages):
        if before.get("role") == after.get("role"):
            return Refusal(
                "A conversation must alternate between user and assistant roles. Make sure the conversation "
                "alternates between user and assistant roles and try again."
            )
    return None


def tool_results(doc: dict[str, Any]) -> Refusal | None:
    # The user turn after an assistant toolUse turn carries a toolResult for each toolUseId, and toolResult blocks
    # answer only the previous turn's toolUse blocks ("Call a tool with the Converse API", Bedrock user guide,
    # https://docs.aws.amazon.com/bedrock/latest/userguide/tool-use-inference-call.html; "Expected toolResult blocks at
    # messages.2.content for the following Ids: ..." and "The number of toolResult blocks at messages.2.content
    # exceeds the number of toolUse blocks of previous turn." are Bedrock's words as users quote them; the search corpus
    # held no copy of them).
    messages = _messages(doc)
    for n, message in enumerate(messages):
        used = [as_dict(b["toolUse"]).get("toolUseId") for b in _content(message) if "toolUse" in b]
        for b in _content(message):
            if "toolUse" in b and not _NAME.match(str(as_dict(b["toolUse"]).get("toolUseId", ""))):
                return Refusal(
                    f"1 validation error detected: Value at 'messages.{n + 1}.member.content.toolUse.toolUseId' failed "
                    "to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
                )
        answered = [as_dict(b["toolResult"]).get("toolUseId") for b in _content(message) if "toolResult" in b]
        if answered:
            asked = []
            if n > 0:
                asked = [as_dict(b["toolUse"]).get("toolUseId") for b in _content(messages[n - 1]) if "toolUse" in b]
            if len(answered) > len(asked) or any(a not in asked for a in answered):
                return Refusal(
                    f"The number of toolResult blocks at messages.{n}.content exceeds the number of toolUse blocks of "
                    "previous turn."
                )
        if used and n + 1 < len(messages):
            following = [
                as_dict(b["toolResult"]).get("toolUseId") for b in _content(messages[n + 1]) if "toolResult" in b
            ]
            missing = [u for u in used if u not in following]
            if missing:
                return Refusal(
                    f"Expected toolResult blocks at messages.{n + 1}.content for the following Ids: "
                    + ", ".join(map(str, missing))
                )
    return None


def tool_names(doc: dict[str, Any]) -> Refusal | None:
    tools = as_list(as_dict(doc.get("toolConfig")).get("tools"))
    for n, tool in enumerate(tools):
        spec = as_dict(as_dict(tool).get("toolSpec"))
        if spec and not _NAME.match(str(spec.get("name", ""))):
            return Refusal(
                f"1 validation error detected: Value '{spec.get('name')}' at "
                f"'toolConfig.tools.{n + 1}.member.toolSpec.name' "
                "failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+"
            )
    return None


RULES = (message_shape, alternation, tool_results, tool_names)


def check(doc: dict[str, Any]) -> Refusal | None:
    """The first rule of Converse that ``doc`` breaks, or None."""
    return first_refusal(RULES, doc)
