"""Anthropic Messages <-> canonical (https://docs.anthropic.com/en/api/messages).

What does not map, and why:
- A `system` message in mid-conversation has no place in Messages turns: it becomes a user turn
  `<system>...</system>` at the same position (the leading system prompt stays `system`).
- `cache_control` is kept on text blocks (canonical `Text.cache`, in `system` too); on tools,
  images and tool results it is dropped: it only moves cost, never the answer.
- Server tools (`web_search_*`, `code_execution_*`, ...) and Anthropic-defined client tools
  (`bash_*`, `text_editor_*`, `computer_*`) travel as native tools: kept for Anthropic, refused for
  other formats. Their result blocks in an answer (`server_tool_use`, `web_search_tool_result`)
  are left out of the canonical answer; in a request's history they are refused.
- JSON mode without a schema (`{"type": "json_object"}`) has no equivalent: refused. A schema goes
  to `output_config.format`.
- `max_tokens` is required here: a request that has none gets DEFAULT_MAX_TOKENS.
- Reasoning from another format becomes thinking: a budget (an effort level becomes one) of at
  least 1,024 below max_tokens (raised to make room when the caller set none), or adaptive thinking
  with an effort on Opus 4.7 and later, which refuse budgets. Thinking gives way to what it refuses
  outright (a temperature other than 1, forced tool use); top_k and a top_p outside [0.95, 1] are
  dropped instead. Opus 4.1+, Sonnet 4.5+ and Haiku 4.5+ take temperature or top_p, not both.
- Another vendor's signed reasoning in an answer rides in the following tool_use id, and comes
  back from it (codec_support.carry_in_ids / unfold_calls); ids sent here are made
  `[a-zA-Z0-9_-]`; an end-user id longer than 256 characters goes as its hash.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from sluice.core.canonical import (
    ChatRequest,
    ChatResponse,
    Document,
    Failure,
    Image,
    Message,
    Part,
    Reasoning,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Untranslatable,
)
from sluice.core.types import WireFormat
from sluice.formats.anthropic.stream import (
    AnthropicStreamDecoder,
    AnthropicStreamEncoder,
    encode_usage,
    stop_reason,
    wire_stop_reason,
)
from sluice.formats.anthropic.wire import usage_from
from sluice.formats.codec_support import (
    args_object,
    body_text,
    carry_in_ids,
    dumps,
    end_user_id,
    fold_system,
    json_body,
    native_tools,
    own_thinking,
    unfold_calls,
    with_safe_ids,
)
from sluice.formats.tool_names import ANTHROPIC as TOOL_NAMES

WIRE = WireFormat.ANTHROPIC_MESSAGES.value
DEFAULT_MAX_TOKENS = 4096
USER_ID_LIMIT = 256  # metadata.user_id's maximum length
TOOL_ID_LIMIT = 64
_EFFORTS = ("minimal", "low", "medium", "high")
# Thinking budget for a caller that asked for an effort level only (OpenAI, Gemini levels).
_EFFORT_BUDGET = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
_KNOWN = {
    "model", "messages", "system", "tools", "tool_choice", "max_tokens", "temperature", "top_p", "top_k",
    "stop_sequences", "stream", "thinking", "metadata", "output_config",
}  # fmt: skip


class AnthropicCodec:
    wire = WireFormat.ANTHROPIC_MESSAGES
    tool_names = TOOL_NAMES

    # --- requests ------------------------------------------------------------------------------

    def decode_request(self, doc: dict[str, Any], model: str | None = None) -> ChatRequest:
        extra = {k: v for k, v in doc.items() if k not in _KNOWN}
        metadata = dict(doc.get("metadata") or {})
        user = metadata.pop("user_id", None)
        if metadata:
            extra["metadata"] = metadata
        output_config = dict(doc.get("output_config") or {})
        response_format = None
        if fmt := output_config.pop("format", None):
            response_format = {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt.get("schema")}}
        reasoning = None
        thinking = doc.get("thinking") or {}
        if thinking.get("type") in ("enabled", "adaptive"):
            effort = output_config.get("effort")
            if effort in _EFFORTS:
                del output_config["effort"]
            reasoning = Reasoning(
                effort=effort if effort in _EFFORTS else None, budget_tokens=thinking.get("budget_tokens")
            )
            if thinking["type"] == "adaptive":
                extra["thinking"] = thinking  # no canonical twin: only this format reads it back
        elif thinking:
            extra["thinking"] = thinking
        if output_config:
            extra["output_config"] = output_config
        system = doc.get("system") or []
        if isinstance(system, str):
            system = [{"type": "text", "text": system}]
        tools = [_decode_tool(t) for t in doc.get("tools") or ()]
        stop = doc.get("stop_sequences") or []
        return ChatRequest(
            model=model or doc.get("model", ""),
            messages=[_decode_message(m) for m in doc.get("messages") or ()],
            system=[Text(b["text"], cache="cache_control" in b) for b in system],
            tools=tools,
            tool_choice=_decode_tool_choice(doc.get("tool_choice")),
            max_tokens=doc.get("max_tokens"),
            temperature=doc.get("temperature"),
            top_p=doc.get("top_p"),
            top_k=doc.get("top_k"),
            stop=list(stop),
            stream=bool(doc.get("stream", False)),
            reasoning=reasoning,
            response_format=response_format,
            user=user,
            extra={WIRE: extra} if extra else {},
        )

    def encode_request(self, request: ChatRequest) -> dict[str, Any]:
        own = dict(request.extra.get(WIRE, {}))
        body: dict[str, Any] = {"model": request.model}
        messages: list[dict[str, Any]] = []
        for message in request.messages:
            if message.role == "system":
                message = fold_system(message)
            # Tool-use ids must match ^[a-zA-Z0-9_-]+$ (another vendor's may not).
            parts = with_safe_ids(message.parts, TOOL_ID_LIMIT, "toolu_")
            blocks = [_encode_part(p) for p in parts if own_thinking(p, WIRE) and _not_empty(p)]
            if blocks:
                messages.append({"role": message.role, "content": blocks})
        body["messages"] = messages
        if request.system:
            body["system"] = [_text_block(t) for t in request.system]
        max_tokens = request.max_tokens or DEFAULT_MAX_TOKENS
        thinking = _thinking_for(request, own.get("thinking"))
        if thinking is not None and request.max_tokens is None:
            max_tokens = max(max_tokens, thinking + DEFAULT_MAX_TOKENS)  # room for the thinking and the answer
        if thinking is not None:
            thinking = min(thinking, max_tokens - 1024)  # the budget must stay below max_tokens
            if thinking < 1024:  # the smallest budget Anthropic takes
                thinking = None
        body["max_tokens"] = max_tokens
        tools = [_encode_tool(t) for t in request.tools if t.native is None]
        tools += native_tools(request.tools, WIRE)
        if tools:
            body["tools"] = tools
        if request.tool_choice:
            body["tool_choice"] = _encode_tool_choice(request.tool_choice)
        body.update(_sampling(request, thinking is not None))
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.stream:
            body["stream"] = True
        output_config = dict(own.pop("output_config", {}))
        r = request.reasoning
        if thinking is not None and adaptive_only(request.model):
            # Opus 4.7 and later refuse manual thinking: adaptive, with the effort the caller meant.
            body["thinking"] = {"type": "adaptive"}
            output_config["effort"] = _effort_of(r.effort if r else None, thinking)
        elif thinking is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": thinking}
        if r and r.effort and (r.budget_tokens or own.get("thinking")) and "effort" not in output_config:
            output_config["effort"] = r.effort
        if fmt := request.response_format:
            output_config["format"] = _encode_format(fmt)
        if output_config:
            body["output_config"] = output_config
        metadata = dict(own.pop("metadata", {}))
        if user := end_user_id(request.user, USER_ID_LIMIT):
            metadata["user_id"] = user
        if metadata:
            body["metadata"] = metadata
        for key, value in own.items():
            body.setdefault(key, value)
        return body

    # --- responses -----------------------------------------------------------------------------

    def decode_response(self, doc: dict[str, Any]) -> ChatResponse:
        content: list[Part] = []
        for block in doc.get("content") or ():
            if block.get("type") in ("text", "tool_use", "thinking", "redacted_thinking"):
                part = _decode_block(block)
                if not isinstance(part, ToolResult):
                    content.append(part)
        return ChatResponse(
            id=doc.get("id", ""),
            model=doc.get("model", ""),
            content=content,
            stop_reason=stop_reason(doc.get("stop_reason")),
            stop_sequence=doc.get("stop_sequence"),
            usage=usage_from(doc.get("usage")),
        )

    def encode_response(self, response: ChatResponse, request: ChatRequest | None = None) -> dict[str, Any]:
        return {
            "id": response.id,
            "type": "message",
            "role": "assistant",
            "model": response.model,
            "content": [_encode_part(p) for p in carry_in_ids(response.content, WIRE) if _not_empty(p)],
            "stop_reason": wire_stop_reason(response.stop_reason),
            "stop_sequence": response.stop_sequence,
            "usage": encode_usage(response.usage),
        }

    def decode_error(self, status: int, body: bytes) -> Failure:
        doc = json_body(body)
        error = doc.get("error") if doc else None
        if isinstance(error, dict):
            return Failure(status, str(error.get("message", "")), str(error.get("type", "")))
        return Failure(status, body_text(body))

    def stream_decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder()

    def stream_encoder(self, request: ChatRequest) -> AnthropicStreamEncoder:
        return AnthropicStreamEncoder()


def _thinking_for(request: ChatRequest, adaptive: Any) -> int | None:
    """The thinking budget to ask for, before it is fitted to max_tokens. Extended thinking refuses
    a temperature other than 1 and forced tool use: a caller's reasoning setting from another
    format gives way to those rather than make the request fail. (Adaptive thinking is
    Anthropic's own, carried in the extras.)"""
    r = request.reasoning
    if r is None or adaptive is not None:
        return None
    forced = request.tool_choice is not None and request.tool_choice.mode in ("any", "tool")
    if request.temperature not in (None, 1) or forced:
        return None
    return r.budget_tokens or _EFFORT_BUDGET[r.effort or "medium"]


# Claude Opus 4.1+, Sonnet 4.5+, Haiku 4.5+ and every later model take `temperature` or `top_p`,
# not both ("temperature and top_p cannot both be specified for this model").
_FAMILY = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:-(\d{1,2}))?(?:\D|$)")


def one_sampler_only(model: str) -> bool:
    found = _FAMILY.search(model)
    if found is None:
        return False
    family, major, minor = found.group(1), int(found.group(2)), int(found.group(3) or 0)
    if major != 4:
        return major > 4
    return minor >= (1 if family == "opus" else 5)


def adaptive_only(model: str) -> bool:
    """Claude Opus 4.7 and later (Mythos, Fable, the 5 family) take adaptive thinking only: "Claude
    4.7 and later models do not support" manual extended thinking (budget_tokens)."""
    if re.search(r"claude-(mythos|fable)", model):
        return True
    found = _FAMILY.search(model)
    if found is None:
        return False
    major, minor = int(found.group(2)), int(found.group(3) or 0)
    return major > 4 or (major == 4 and minor >= 7)


def _effort_of(effort: str | None, budget: int) -> str:
    if effort in ("low", "medium", "high"):
        return effort
    if effort == "minimal" or budget < 4096:
        return "low"
    return "medium" if budget < 16384 else "high"


def _sampling(request: ChatRequest, thinking: bool) -> dict[str, Any]:
    """temperature, top_p and top_k as the model takes them. With thinking on, top_k is refused
    and top_p must lie in [0.95, 1]; the newer families refuse temperature and top_p together.
    What does not fit is dropped: they are sampling hints (Gemini CLI sends all three)."""
    out: dict[str, Any] = {}
    if request.temperature is not None:
        out["temperature"] = request.temperature
    if request.top_p is not None and not (thinking and not 0.95 <= request.top_p <= 1):
        if "temperature" not in out or not one_sampler_only(request.model):
            out["top_p"] = request.top_p
    if request.top_k is not None and not thinking:
        out["top_k"] = request.top_k
    return out


# --- decoding helpers ------------------------------------------------------------------------


def _decode_message(m: dict[str, Any]) -> Message:
    content = m.get("content")
    if isinstance(content, str):
        return Message(m["role"], [Text(content)])
    # Tool-use ids may carry another vendor's reasoning (a Gemini thought signature), restored here.
    return Message(m["role"], unfold_calls([_decode_block(b) for b in content or ()]))


def _decode_block(b: dict[str, Any]) -> Part:
    kind = b.get("type")
    if kind == "text":
        return Text(b.get("text", ""), cache="cache_control" in b)
    if kind == "image":
        return _decode_image(b.get("source") or {})
    if kind == "document":
        return _decode_document(b)
    if kind == "tool_use":
        return ToolCall(b["id"], b["name"], dumps(b.get("input") or {}))
    if kind == "tool_result":
        raw = b.get("content")
        parts = [Text(raw)] if isinstance(raw, str) else [_decode_block(x) for x in raw or ()]
        content = [p for p in parts if isinstance(p, Text | Image | Document)]
        return ToolResult(b["tool_use_id"], content, is_error=bool(b.get("is_error", False)))
    if kind == "thinking":
        return Thinking(b.get("thinking", ""), signature=b.get("signature"), origin=WIRE)
    if kind == "redacted_thinking":
        return Thinking(b.get("data", ""), redacted=True, origin=WIRE)
    raise Untranslatable(f"{WIRE}: content block type {kind!r} cannot be translated to another format")


def _decode_image(source: dict[str, Any]) -> Image:
    if source.get("type") == "base64":
        return Image(source.get("media_type", ""), data=source.get("data"))
    if source.get("type") == "url":
        return Image("", url=source.get("url"))
    raise Untranslatable(f"{WIRE}: image source {source.get('type')!r} cannot be translated")


def _decode_document(b: dict[str, Any]) -> Document:
    source = b.get("source") or {}
    name = b.get("title")
    if source.get("type") == "base64":
        return Document(source.get("media_type", "application/pdf"), data=source.get("data"), name=name)
    if source.get("type") == "url":
        return Document("application/pdf", url=source.get("url"), name=name)
    if source.get("type") == "text":
        data = base64.b64encode(str(source.get("data", "")).encode()).decode()
        return Document(source.get("media_type", "text/plain"), data=data, name=name)
    raise Untranslatable(f"{WIRE}: document source {source.get('type')!r} cannot be translated")


def _decode_tool(t: dict[str, Any]) -> Tool:
    if t.get("type") in (None, "custom") and "input_schema" in t:
        return Tool(t["name"], t.get("description", ""), t["input_schema"])
    return Tool(t.get("name", ""), native=t, origin=WIRE)


def _decode_tool_choice(raw: dict[str, Any] | None) -> ToolChoice | None:
    if not raw:
        return None
    mode = raw.get("type", "auto")
    parallel = None if "disable_parallel_tool_use" not in raw else not raw["disable_parallel_tool_use"]
    return ToolChoice(mode=mode, name=raw.get("name"), parallel=parallel)


# --- encoding helpers ------------------------------------------------------------------------


def _not_empty(part: Part) -> bool:
    return not isinstance(part, Text) or part.text != ""  # Messages rejects empty text blocks


def _text_block(t: Text) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": t.text}
    if t.cache:
        block["cache_control"] = {"type": "ephemeral"}
    return block


def _encode_part(p: Part) -> dict[str, Any]:
    if isinstance(p, Text):
        return _text_block(p)
    if isinstance(p, Image):
        if p.data is not None:
            return {"type": "image", "source": {"type": "base64", "media_type": p.media_type, "data": p.data}}
        return {"type": "image", "source": {"type": "url", "url": p.url}}
    if isinstance(p, Document):
        return _encode_document(p)
    if isinstance(p, ToolCall):
        return {"type": "tool_use", "id": p.id, "name": p.name, "input": args_object(p, WIRE)}
    if isinstance(p, ToolResult):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": p.call_id,
            "content": [_encode_part(x) for x in p.content if _not_empty(x)],
        }
        if p.is_error:
            block["is_error"] = True
        return block
    if p.redacted:
        return {"type": "redacted_thinking", "data": p.text}
    return {"type": "thinking", "thinking": p.text, "signature": p.signature or ""}


def _encode_document(p: Document) -> dict[str, Any]:
    if p.data is None:
        block: dict[str, Any] = {"type": "document", "source": {"type": "url", "url": p.url}}
    elif p.media_type.startswith("text/"):
        text = base64.b64decode(p.data).decode("utf-8", "replace")
        block = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": text}}
    else:
        block = {"type": "document", "source": {"type": "base64", "media_type": p.media_type, "data": p.data}}
    if p.name:
        block["title"] = p.name
    return block


def _encode_tool(t: Tool) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": t.name, "input_schema": t.parameters}
    if t.description:
        tool["description"] = t.description
    return tool


def _encode_tool_choice(c: ToolChoice) -> dict[str, Any]:
    out: dict[str, Any] = {"type": c.mode}
    if c.mode == "tool":
        out["name"] = c.name
    if c.parallel is not None and c.mode != "none":
        out["disable_parallel_tool_use"] = not c.parallel
    return out


def _encode_format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", "schema": (fmt.get("json_schema") or {}).get("schema") or {}}
    raise Untranslatable(f"{WIRE}: response_format {fmt.get('type')!r} has no equivalent (only a JSON schema does)")
