"""What the Anthropic Messages API refuses, for every fake endpoint that takes its body: ``/v1/messages``, Bedrock
InvokeModel of Claude and Vertex ``rawPredict``/``streamRawPredict`` of Claude (``tests.fakes.cloud``).

Messages are the API's own (its pydantic-style ``path: problem`` lines), as seen in the error bodies quoted below.
``check(doc, model)`` returns the first refusal, or None."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes import shapes
from tests.fakes.rules_kit import Refusal, as_dict, as_list, claude_family, first_refusal, signed

THINKING_KIND = "thinking"  # the signature kind of the thinking blocks the fake emits

# Block types by role. Messages API reference, "messages" (https://docs.anthropic.com/en/api/messages): user turns
# carry text, image, document, search_result and tool_result blocks; assistant turns carry text, tool_use, thinking,
# redacted_thinking and the server tools' blocks.
_USER_BLOCKS = {"text", "image", "document", "search_result", "tool_result", "container_upload"}
_ASSISTANT_BLOCKS = {
    "text",
    "tool_use",
    "thinking",
    "redacted_thinking",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "mcp_tool_use",
    "mcp_tool_result",
    "container_upload",
}
_THINKING_BLOCKS = ("thinking", "redacted_thinking")
# tool_use ids: "messages.1.content.1.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
# (CommandCodeAI/command-code#323, RooCodeInc/Roo-Code#10649).
_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")
# Custom tool names: the API answers "tools.22.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,128}$'"
# (netclaw-dev/netclaw#1133, vybestack/llxprt-code#482, modelcontextprotocol#1345, 2025-11 onwards; the tool-use
# guide https://platform.claude.com/docs/en/agents-and-tools/tool-use/define-tools still says 64, the API takes 128).
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_THINKING_DOCS = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in as_list(content) if isinstance(b, dict)]


def _thinking(doc: dict[str, Any]) -> str | None:
    """``enabled``, ``adaptive``, ``disabled`` or None (no thinking field)."""
    kind = as_dict(doc.get("thinking")).get("type")
    return kind if isinstance(kind, str) else None


# -- required fields and their shapes ------------------------------------------------------------------------------


def required_fields(doc: dict[str, Any], model: str) -> Refusal | None:
    # Messages API reference: model, max_tokens and messages are required (https://docs.anthropic.com/en/api/messages).
    if not isinstance(doc.get("max_tokens"), int) or isinstance(doc.get("max_tokens"), bool):
        return Refusal("max_tokens: Field required")
    if doc["max_tokens"] < 1:
        return Refusal("max_tokens: Input should be greater than or equal to 1")
    if not isinstance(doc.get("messages"), list):
        return Refusal("messages: Field required")
    return None


def _mid_conversation_system(model: str) -> bool:
    # "Claude Opus 4.8 accepts role: "system" messages immediately after a user turn in the messages array ... No beta
    # header is required" (https://platform.claude.com/docs/en/about-claude/models/whats-new-claude-4-8, quoted in
    # simonw/llm-anthropic#73); "Supported on Claude Opus 5, Opus 4.8, and Fable 5; not on Sonnet 5" (elgorro/aiquila
    # #413, from https://platform.claude.com/docs/en/build-with-claude/mid-conversation-system-messages). Claude Code
    # 2.1.332 sends one on its default model, claude-opus-5-5.
    if re.search(r"claude-fable", model):
        return True
    family = claude_family(model)
    return family is not None and family[0] == "opus" and (family[1] >= 5 or (family[1] == 4 and family[2] >= 8))


def roles(doc: dict[str, Any], model: str) -> Refusal | None:
    # Roles are user and assistant (https://docs.anthropic.com/en/api/messages, "messages"); older models answer
    # 'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an
    # input message role.' (ianarawjo/ChainForge#271). Models with mid-conversation system messages take a `system`
    # message under the placement rules of
    # https://platform.claude.com/docs/en/build-with-claude/mid-conversation-system-messages#limitations (quoted in
    # maximhq/bifrost#3945): not messages[0], right after a user turn, last or followed by an assistant turn, never two
    # in a row, text only.
    # Consecutive same-role turns are merged by the API ("Consecutive user or assistant turns in your request will be
    # combined into a single turn"), so alternation is not enforced, nor is a user first turn.
    messages = doc["messages"]
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            return Refusal(f"messages.{n}: Input should be a valid dictionary")
        if "content" not in message:
            return Refusal(f"messages.{n}.content: Field required")
        role = message.get("role")
        if role == "system" and _mid_conversation_system(model):
            before = messages[n - 1] if n else None
            after = messages[n + 1] if n + 1 < len(messages) else None
            placed = (
                isinstance(before, dict)
                and before.get("role") == "user"
                and (after is None or (isinstance(after, dict) and after.get("role") == "assistant"))
            )
            if not placed:
                return Refusal(
                    f"messages.{n}: a system message must follow a user turn and be the last message or be followed "
                    "by an assistant turn"
                )
            if any(b.get("type") != "text" for b in _blocks(message)):
                return Refusal(f"messages.{n}.content: a system message may hold only text blocks")
        elif role == "system":
            return Refusal(
                'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not '
                '"system" as an input message role.'
            )
        elif role not in ("user", "assistant"):
            return Refusal(f"messages.{n}.role: Input should be 'user' or 'assistant'")
    return None


def block_types(doc: dict[str, Any], model: str) -> Refusal | None:
    # Block types are tagged unions per role (https://docs.anthropic.com/en/api/messages); a tool_result in an
    # assistant turn or a tool_use in a user turn is refused by the union's tag check.
    for n, message in enumerate(doc["messages"]):
        allowed = _USER_BLOCKS if message["role"] in ("user", "system") else _ASSISTANT_BLOCKS
        for m, block in enumerate(_blocks(message)):
            if block.get("type") not in allowed:
                return Refusal(
                    f"messages.{n}.content.{m}: Input tag '{block.get('type')}' found using 'type' does not match "
                    f"any of the expected tags: {', '.join(repr(t) for t in sorted(allowed))}"
                )
            if block["type"] == "tool_use" and not _TOOL_ID.match(str(block.get("id", ""))):
                return Refusal(f"messages.{n}.content.{m}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'")
    return None


def non_empty_content(doc: dict[str, Any], model: str) -> Refusal | None:
    # "messages.0: all messages must have non-empty content except for the optional final assistant message"
    # (anthropics/claude-code#6774, #3196, tidyverse/ellmer#709), "messages: text content blocks must be non-empty"
    # (anthropics/claude-code#59812, anthropics/anthropic-sdk-python#461) and "messages: text content blocks must
    # contain non-whitespace text" (anthropics/claude-code#23440).
    messages = doc["messages"]
    for n, message in enumerate(messages):
        content = message["content"]
        final_assistant = n == len(messages) - 1 and message["role"] == "assistant"
        if (content == "" or content == []) and not final_assistant:
            return Refusal(
                f"messages.{n}: all messages must have non-empty content except for the optional final assistant "
                "message"
            )
        for block in _blocks(message) if content != "" else []:
            if block.get("type") != "text":
                continue
            text = block.get("text")
            if not isinstance(text, str) or text == "":
                return Refusal("messages: text content blocks must be non-empty")
            if not text.strip():
                return Refusal("messages: text content blocks must contain non-whitespace text")
    return None


def tool_names(doc: dict[str, Any], model: str) -> Refusal | None:
    for n, tool in enumerate(as_list(doc.get("tools"))):
        if not isinstance(tool, dict):
            return Refusal(f"tools.{n}: Input should be a valid dictionary")
        name = str(tool.get("name", ""))
        if tool.get("type") not in (None, "custom"):
            continue
        if len(name) > 128:  # anthropics/claude-code#96152 (a long MCP tool name): the length has its own message
            return Refusal(f"tools.{n}.custom.name: String should have at most 128 characters")
        if not _TOOL_NAME.match(name):
            return Refusal(f"tools.{n}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
    return None


def tool_result_pairing(doc: dict[str, Any], model: str) -> Refusal | None:
    # "Each tool_use block must have a corresponding tool_result block in the next message", and the tool results
    # come first in that message: the API's errors "messages.22: `tool_use` ids were found without `tool_result`
    # blocks immediately after: ..." (anthropics/claude-code#5989, #1237), "Did not find 1 `tool_result` block(s) at
    # the beginning of this message. Messages following `tool_use` blocks must begin with a matching number of
    # `tool_result` blocks." (anthropics/anthropic-sdk-typescript#653, anthropics/claude-code#37), "unexpected
    # `tool_use_id` found in `tool_result` blocks: ... Each `tool_result` block must have a corresponding `tool_use`
    # block in the previous message." (anthropics/claude-code#13460); the tool-use guide
    # (https://docs.claude.com/en/docs/agents-and-tools/tool-use/implement-tool-use) says tool_result blocks must
    # immediately follow their tool_use and come first in the user message.
    messages = doc["messages"]
    for n, message in enumerate(messages):
        blocks = _blocks(message)
        if message["role"] == "user":
            asked = set()
            if n > 0 and messages[n - 1]["role"] == "assistant":
                asked = {b.get("id") for b in _blocks(messages[n - 1]) if b.get("type") == "tool_use"}
            for m, block in enumerate(blocks):
                if block.get("type") == "tool_result" and block.get("tool_use_id") not in asked:
                    return Refusal(
                        f"messages.{n}.content.{m}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{block.get('tool_use_id')}. Each `tool_result` block must have a corresponding `tool_use` "
                        "block in the previous message."
                    )
            continue
        uses = [b.get("id") for b in blocks if b.get("type") == "tool_use"]
        if not uses or n + 1 >= len(messages):
            continue
        following = _blocks(messages[n + 1]) if messages[n + 1]["role"] == "user" else []
        leading = []
        for block in following:
            if block.get("type") != "tool_result":
                break
            leading.append(block.get("tool_use_id"))
        missing = [u for u in uses if u not in leading]
        if missing and any(b.get("type") == "tool_result" for b in following):
            return Refusal(
                f"messages.{n + 1}: Did not find {len(uses)} `tool_result` block(s) at the beginning of this message. "
                "Messages following `tool_use` blocks must begin with a matching number of `tool_result` blocks."
            )
        if missing:
            return Refusal(
                f"messages.{n}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(str(u) for u in missing)}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
    return None


# -- sampling, per model family ------------------------------------------------------------------------------------


def temperature_with_top_p(doc: dict[str, Any], model: str) -> Refusal | None:
    # Claude Opus 4.1 and later, Sonnet 4.5 and later, Haiku 4.5 and later take `temperature` or `top_p`, not both:
    # "Use only temperature OR top_p, not both" (Migrating to Claude 4.5,
    # https://platform.claude.com/docs/en/about-claude/models/migrating-to-claude-4, "Update sampling parameters");
    # the error is "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    # (langfuse/langfuse#9882 on Sonnet 4.5, skydiscover-ai/skydiscover#15 and Vali-98/ChatterUI#564 on Sonnet 4.6).
    if doc.get("temperature") is None or doc.get("top_p") is None:
        return None
    family = claude_family(model)
    if family is None:
        return None
    name, major, minor = family
    newer = major >= 5 or (major == 4 and minor >= (1 if name == "opus" else 5))
    if not newer:
        return None
    return Refusal("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")


# -- extended thinking ---------------------------------------------------------------------------------------------


def _adaptive_only(model: str) -> bool:
    # "Claude Fable 5.1, Claude Mythos 5.1, Claude Mythos 5, Claude Fable 5, and Claude Mythos Preview only support
    # adaptive thinking. Manual extended thinking (thinking.type: "enabled" with budget_tokens) and disabled thinking
    # (thinking.type: "disabled") are not supported on these models and will return a 400 error"; "Claude Opus 4.7 ...
    # only support[s] adaptive thinking" (Bedrock user guide, "Adaptive thinking",
    # https://docs.aws.amazon.com/bedrock/latest/userguide/claude-messages-adaptive-thinking.html). Anthropic's page
    # (https://platform.claude.com/docs/en/build-with-claude/extended-thinking) says "Claude 4.7 and later models do
    # not support it"; Opus 5 and Sonnet 5 are left out here, as the Bedrock list leaves them out.
    if re.search(r"claude-(mythos|fable)", model):
        return True
    family = claude_family(model)
    return family is not None and family[0] == "opus" and family[1] == 4 and family[2] >= 7


def _adaptive_capable(model: str) -> bool:
    # Adaptive thinking: Opus 4.6, Sonnet 4.6, Opus 4.7 and the 5 family; "Older models (Claude Sonnet 4.5, Claude
    # Opus 4.5, etc.) do not support adaptive thinking and require thinking.type: "enabled" with budget_tokens"
    # (same Bedrock page, and https://platform.claude.com/docs/en/build-with-claude/adaptive-thinking).
    if re.search(r"claude-(mythos|fable)", model):
        return True
    family = claude_family(model)
    if family is None:
        return True  # not a Claude id we can place: let it through
    name, major, minor = family
    return major >= 5 or (major == 4 and minor >= 6 and name in ("opus", "sonnet"))


def thinking_budget(doc: dict[str, Any], model: str) -> Refusal | None:
    # Extended thinking (https://platform.claude.com/docs/en/build-with-claude/extended-thinking): budget_tokens has a
    # floor of 1,024 and must be less than max_tokens. The wording of the per-model refusals is the fake's.
    mode = _thinking(doc)
    if mode in ("enabled", "disabled") and _adaptive_only(model):
        return Refusal(
            f"thinking.type.{mode} is not supported for this model. Use thinking.type.adaptive and "
            "output_config.effort to control thinking behavior."
        )
    if mode == "adaptive" and not _adaptive_capable(model):
        return Refusal("thinking.type.adaptive is not supported for this model. Use thinking.type.enabled instead.")
    if mode != "enabled":
        return None
    budget = as_dict(doc.get("thinking")).get("budget_tokens")
    if not isinstance(budget, int):
        return Refusal("thinking.enabled.budget_tokens: Field required")
    if budget < 1024:
        return Refusal("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if doc["max_tokens"] <= budget:
        return Refusal(
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
            f"{_THINKING_DOCS}#max-tokens-and-context-window-size"
        )
    return None


def thinking_sampling(doc: dict[str, Any], model: str) -> Refusal | None:
    # "Thinking isn't compatible with temperature or top_k modifications as well as forced tool use"; top_p may be
    # set between 0.95 and 1 (extended thinking, "Feature compatibility",
    # https://platform.claude.com/docs/en/build-with-claude/extended-thinking#feature-compatibility); forced tool use
    # is answered "Thinking may not be enabled when tool_choice forces tool use." (mastra-ai/mastra#7507,
    # can1357/oh-my-pi#341). Adaptive thinking has the same compatibility: "temperature may only be set to 1 when
    # thinking is enabled or in adaptive mode" (quoted in BuilderIO/agent-native core 0.164.25,
    # dotCipher/opencode-claude-bridge#1).
    if _thinking(doc) not in ("enabled", "adaptive"):
        return None
    temperature = doc.get("temperature")
    if temperature is not None and temperature != 1:
        return Refusal(
            "`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. Please consult our "
            f"documentation at {_THINKING_DOCS}#feature-compatibility"
        )
    if doc.get("top_k") is not None:
        return Refusal(
            f"`top_k` must be unset when thinking is enabled. Please consult our documentation at {_THINKING_DOCS}"
            "#feature-compatibility"
        )
    top_p = doc.get("top_p")
    if top_p is not None and not 0.95 <= top_p <= 1:
        return Refusal(
            "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled. Please consult our "
            f"documentation at {_THINKING_DOCS}#feature-compatibility"
        )
    if as_dict(doc.get("tool_choice")).get("type") in ("any", "tool"):
        return Refusal("Thinking may not be enabled when tool_choice forces tool use.")
    return None


def thinking_round_trip(doc: dict[str, Any], model: str) -> Refusal | None:
    # With thinking enabled, the assistant turn a tool result answers must start with its thinking block, sent back
    # unchanged: "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When
    # `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost
    # set of `tool_use` and `tool_result` blocks). ..." (anomalyco/opencode#3077, Kilo-Org/kilocode#5219) and
    # "messages.1.content.0: Invalid `signature` in `thinking` block" (ding113/claude-code-hub#518,
    # kaitranntt/ccs#415); "preserve thinking blocks ... pass them back unmodified" (extended thinking, "Preserving
    # thinking blocks"). With thinking off, "When thinking is disabled, an `assistant` message in the final position
    # cannot contain `thinking`." (tailcallhq/forgecode#1853).
    messages = doc["messages"]
    for n, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        for m, block in enumerate(_blocks(message)):
            if block.get("type") == "thinking" and not signed(
                THINKING_KIND, str(block.get("thinking", "")), block.get("signature")
            ):
                return Refusal(f"messages.{n}.content.{m}: Invalid `signature` in `thinking` block")
    mode = _thinking(doc)
    if mode in (None, "disabled"):
        if messages and messages[-1]["role"] == "assistant":
            if any(b.get("type") in _THINKING_BLOCKS for b in _blocks(messages[-1])):
                return Refusal(
                    f"messages.{len(messages) - 1}.content.0: When thinking is disabled, an `assistant` message in "
                    "the final position cannot contain `thinking`. To use thinking blocks, enable `thinking` in your "
                    "request."
                )
        return None
    if mode != "enabled" or len(messages) < 2:
        return None
    last = messages[-1]
    if last["role"] != "user" or not any(b.get("type") == "tool_result" for b in _blocks(last)):
        return None
    n = len(messages) - 2
    previous = _blocks(messages[n]) if messages[n]["role"] == "assistant" else []
    if previous and previous[0].get("type") not in _THINKING_BLOCKS:
        return Refusal(
            f"messages.{n}.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            f"`{previous[0].get('type')}`. When `thinking` is enabled, a final `assistant` message must start with a "
            "thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
            "include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please "
            f"consult our documentation at {_THINKING_DOCS}"
        )
    return None


# -- metadata ------------------------------------------------------------------------------------------------------


def metadata(doc: dict[str, Any], model: str) -> Refusal | None:
    # metadata holds user_id only, "maxLength 256" (Messages API reference, "metadata.user_id",
    # https://platform.claude.com/docs/en/api/messages#metadata, quoted in vercel/ai#12419).
    given = doc.get("metadata")
    if given is None:
        return None
    if not isinstance(given, dict):
        return Refusal("metadata: Input should be a valid dictionary")
    for key in given:
        if key != "user_id":
            return Refusal(f"metadata.{key}: Extra inputs are not permitted")
    user_id = given.get("user_id")
    if user_id is not None and (not isinstance(user_id, str) or len(user_id) > 256):
        return Refusal("metadata.user_id: String should have at most 256 characters")
    return None


def field_types(doc: dict[str, Any], model: str) -> Refusal | None:
    # Every field the fakes read has the JSON type the API's reference gives it (tests.fakes.shapes cites the typed
    # request params): a wrong one is the API's 400, never a crash of the fake.
    wrong = shapes.wrong_field(doc, shapes.ANTHROPIC)
    return None if wrong is None else Refusal(shapes.anthropic_message(wrong))


RULES = (
    field_types,
    required_fields,
    roles,
    block_types,
    non_empty_content,
    tool_names,
    tool_result_pairing,
    temperature_with_top_p,
    thinking_budget,
    thinking_sampling,
    thinking_round_trip,
    metadata,
)


def check(doc: dict[str, Any], model: str) -> Refusal | None:
    """The first rule of the Messages API that ``doc`` (sent for ``model``) breaks, or None."""
    return first_refusal(RULES, doc, model)


def messages_field(doc: dict[str, Any], model: str) -> Refusal | None:
    return None if isinstance(doc.get("messages"), list) else Refusal("messages: Field required")


# Token counting (POST /v1/messages/count_tokens) takes the Messages body without max_tokens and validates the
# conversation the same way (https://docs.anthropic.com/en/api/messages-count-tokens).
COUNT_RULES = (messages_field, roles, block_types, non_empty_content, tool_names, tool_result_pairing)


def check_count(doc: dict[str, Any], model: str) -> Refusal | None:
    return first_refusal(COUNT_RULES, doc, model)
