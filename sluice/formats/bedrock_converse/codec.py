"""Bedrock Converse API (`/model/{modelId}/converse`) <-> canonical conversation.

Shapes follow botocore's bedrock-runtime service model (2023-09-30). Converse differs from the
Messages API in ways that matter here: the model travels in the URL; content blocks are unions
keyed by kind (`{"text": ...}`, `{"toolUse": ...}`); prompt caching is a separate `cachePoint`
block after the cached part; binary data is base64 in JSON; model-specific knobs (top_k,
Anthropic `thinking`) go in `additionalModelRequestFields`. Streams: `bedrock_converse.stream`.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import orjson

from sluice.core.canonical import (
    ChatRequest,
    ChatResponse,
    Document,
    Failure,
    Image,
    Message,
    Part,
    Reasoning,
    StopReason,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Untranslatable,
)
from sluice.core.types import WireFormat
from sluice.formats.bedrock_converse.stream import ConverseStreamDecoder, ConverseStreamEncoder, stop_reason_of
from sluice.formats.bedrock_converse.wire import usage_from
from sluice.formats.codec_support import end_user_id, fold_system, with_safe_ids
from sluice.formats.tool_names import BEDROCK as TOOL_NAMES

WIRE = WireFormat.BEDROCK_CONVERSE
_DOC_FORMATS = {
    "application/pdf": "pdf",
    "text/plain": "txt",
    "text/csv": "csv",
    "text/html": "html",
    "text/markdown": "md",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
}
_MEDIA_OF_DOC = {v: k for k, v in _DOC_FORMATS.items()}
_KNOWN = {"modelId", "messages", "system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"}
_CACHE_POINT = {"cachePoint": {"type": "default"}}
# Converse `requestMetadata` values: 0-256 characters of this set (botocore's bedrock-runtime model).
_METADATA_VALUE = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,.-]{1,256}")


# --- decoding -------------------------------------------------------------------------------


def _decode_block(block: dict[str, Any], parts: list[Part]) -> None:
    if "text" in block:
        parts.append(Text(str(block["text"])))
    elif "cachePoint" in block:
        if parts and isinstance(parts[-1], Text):
            parts[-1].cache = True
    elif "image" in block:
        image = block["image"]
        source = image.get("source") or {}
        if "s3Location" in source:
            parts.append(Image(f"image/{image.get('format', '')}", url=source["s3Location"].get("uri")))
        else:
            parts.append(Image(f"image/{image.get('format', '')}", data=source.get("bytes")))
    elif "document" in block:
        doc = block["document"]
        source = doc.get("source") or {}
        media = _MEDIA_OF_DOC.get(str(doc.get("format")), "application/octet-stream")
        if "text" in source:
            text = base64.b64encode(str(source["text"]).encode()).decode()
            parts.append(Document("text/plain", data=text, name=doc.get("name")))
        else:
            parts.append(Document(media, data=source.get("bytes"), name=doc.get("name")))
    elif "toolUse" in block:
        use = block["toolUse"]
        parts.append(ToolCall(use["toolUseId"], use["name"], orjson.dumps(use.get("input", {})).decode()))
    elif "toolResult" in block:
        result = block["toolResult"]
        content: list[Part] = []
        for item in result.get("content") or []:
            if "json" in item:
                content.append(Text(orjson.dumps(item["json"]).decode()))
            else:
                _decode_block(item, content)
        parts.append(
            ToolResult(
                result["toolUseId"],
                [p for p in content if isinstance(p, Text | Image | Document)],
                is_error=result.get("status") == "error",
            )
        )
    elif "reasoningContent" in block:
        reasoning = block["reasoningContent"]
        if "redactedContent" in reasoning:
            parts.append(Thinking(str(reasoning["redactedContent"]), redacted=True, origin=WIRE.value))
        else:
            said = reasoning.get("reasoningText") or {}
            parts.append(Thinking(str(said.get("text", "")), said.get("signature"), origin=WIRE.value))
    else:
        kind = next(iter(block), "?")
        raise Untranslatable(f"Bedrock Converse content block '{kind}' has no equivalent here")


def decode_request(doc: dict[str, Any], model: str | None = None) -> ChatRequest:
    messages = []
    for raw in doc.get("messages") or []:
        parts: list[Part] = []
        for block in raw.get("content") or []:
            _decode_block(block, parts)
        messages.append(Message(raw.get("role", "user"), parts))
    system: list[Part] = []
    for block in doc.get("system") or []:
        _decode_block(block, system)
    config = doc.get("inferenceConfig") or {}
    extra_fields = dict(doc.get("additionalModelRequestFields") or {})
    request = ChatRequest(
        model=model or str(doc.get("modelId", "")),
        messages=messages,
        system=[p for p in system if isinstance(p, Text)],
        max_tokens=config.get("maxTokens"),
        temperature=config.get("temperature"),
        top_p=config.get("topP"),
        top_k=extra_fields.pop("top_k", None),
        stop=list(config.get("stopSequences") or []),
    )
    thinking = extra_fields.pop("thinking", None)
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        request.reasoning = Reasoning(budget_tokens=thinking.get("budget_tokens"))
    tool_config = doc.get("toolConfig") or {}
    for entry in tool_config.get("tools") or []:
        spec = entry.get("toolSpec")
        if spec:
            schema = (spec.get("inputSchema") or {}).get("json") or {"type": "object", "properties": {}}
            request.tools.append(Tool(spec["name"], spec.get("description", ""), schema))
    choice = tool_config.get("toolChoice")
    if isinstance(choice, dict):
        if "tool" in choice:
            request.tool_choice = ToolChoice("tool", choice["tool"].get("name"))
        elif "any" in choice:
            request.tool_choice = ToolChoice("any")
        else:
            request.tool_choice = ToolChoice("auto")
    extra = {k: v for k, v in doc.items() if k not in _KNOWN}
    if extra_fields:
        extra["additionalModelRequestFields"] = extra_fields
    if extra:
        request.extra[WIRE.value] = extra
    return request


# --- encoding -------------------------------------------------------------------------------


def _encode_part(part: Part, index: int) -> list[dict[str, Any]]:
    if isinstance(part, Text):
        return [{"text": part.text}, _CACHE_POINT] if part.cache else [{"text": part.text}]
    if isinstance(part, Image):
        fmt = part.media_type.partition("/")[2] or "png"
        if part.data is not None:
            return [{"image": {"format": fmt, "source": {"bytes": part.data}}}]
        if part.url and part.url.startswith("s3://"):
            return [{"image": {"format": fmt, "source": {"s3Location": {"uri": part.url}}}}]
        raise Untranslatable("image url: Bedrock Converse takes image bytes or an s3:// location only")
    if isinstance(part, Document):
        doc_format = _DOC_FORMATS.get(part.media_type)
        if doc_format is None or part.data is None:
            raise Untranslatable(f"document ({part.media_type or 'url'}): Bedrock Converse needs bytes of a known type")
        name = part.name or f"document-{index}"
        return [{"document": {"format": doc_format, "name": name, "source": {"bytes": part.data}}}]
    if isinstance(part, ToolCall):
        return [{"toolUse": {"toolUseId": part.id, "name": part.name, "input": _arguments(part)}}]
    if isinstance(part, ToolResult):
        content = [
            block for i, p in enumerate(part.content) for block in _encode_part(p, i) if "cachePoint" not in block
        ]
        result = {"toolUseId": part.call_id, "content": content or [{"text": ""}]}
        if part.is_error:
            result["status"] = "error"
        return [{"toolResult": result}]
    if part.origin != WIRE.value:
        return []  # another vendor's signed reasoning is not valid here (see core.canonical)
    if part.redacted:
        return [{"reasoningContent": {"redactedContent": part.text}}]
    said: dict[str, Any] = {"text": part.text}
    if part.signature:
        said["signature"] = part.signature
    return [{"reasoningContent": {"reasoningText": said}}]


def _arguments(call: ToolCall) -> Any:
    # Converse takes the input as a JSON document, so the model's JSON text is parsed once here.
    try:
        return orjson.loads(call.arguments_json or "{}")
    except orjson.JSONDecodeError:
        raise Untranslatable(f"tool call {call.name}: its arguments are not valid JSON") from None


def _encode_message(message: Message) -> dict[str, Any]:
    if message.role == "system":
        # No system role inside the conversation: it stays where it was, as a user turn the model can tell apart
        # (as the Anthropic and Gemini codecs do). Claude Code's requests carry one.
        message = fold_system(message)
    # toolUseId: 1-64 characters of [a-zA-Z0-9_-] (botocore's bedrock-runtime model).
    parts = with_safe_ids(message.parts, 64, "tooluse_")
    content = [block for i, part in enumerate(parts) for block in _encode_part(part, i)]
    return {"role": message.role, "content": content}


def encode_request(request: ChatRequest) -> dict[str, Any]:
    # "A conversation must alternate between user and assistant roles": adjacent turns of one role (a folded
    # system turn next to a user turn) become one message.
    messages: list[dict[str, Any]] = []
    for encoded in (_encode_message(m) for m in request.messages):
        if messages and messages[-1]["role"] == encoded["role"]:
            messages[-1]["content"] += encoded["content"]
        else:
            messages.append(encoded)
    doc: dict[str, Any] = {"messages": messages}
    if request.system:
        doc["system"] = [block for i, t in enumerate(request.system) for block in _encode_part(t, i)]
    config: dict[str, Any] = {}
    for key, value in (
        ("maxTokens", request.max_tokens),
        ("temperature", request.temperature),
        ("topP", request.top_p),
    ):
        if value is not None:
            config[key] = value
    if request.stop:
        config["stopSequences"] = request.stop
    if config:
        doc["inferenceConfig"] = config
    extra = dict(request.extra.get(WIRE.value, {}))
    fields = dict(extra.pop("additionalModelRequestFields", {}))
    if request.top_k is not None:
        fields["top_k"] = request.top_k
    if request.reasoning is not None and request.reasoning.budget_tokens:
        fields["thinking"] = {"type": "enabled", "budget_tokens": request.reasoning.budget_tokens}
    elif request.reasoning is not None and request.reasoning.effort:
        doc["outputConfig"] = {"effort": request.reasoning.effort}
    if fields:
        doc["additionalModelRequestFields"] = fields
    _encode_tools(request, doc)
    if request.response_format is not None:
        doc.setdefault("outputConfig", {})["textFormat"] = _text_format(request.response_format)
    if user := end_user_id(request.user, 256, _METADATA_VALUE):
        doc["requestMetadata"] = {"user": user}
    doc.update(extra)
    return doc


def _encode_tools(request: ChatRequest, doc: dict[str, Any]) -> None:
    choice = request.tool_choice or ToolChoice()
    if not request.tools:
        return
    if choice.mode == "none":
        used = any(isinstance(p, ToolCall | ToolResult) for m in request.messages for p in m.parts)
        if used:
            raise Untranslatable("tool_choice none: Bedrock Converse cannot forbid tools in a conversation using them")
        return  # no tools offered is the same as none allowed
    tools: dict[str, Any] = {
        "tools": [
            {
                "toolSpec": {
                    "name": t.name,
                    "description": t.description or t.name,
                    "inputSchema": {"json": t.parameters},
                }
            }
            for t in request.tools
        ]
    }
    if choice.mode == "any":
        tools["toolChoice"] = {"any": {}}
    elif choice.mode == "tool":
        tools["toolChoice"] = {"tool": {"name": choice.name}}
    doc["toolConfig"] = tools


def _text_format(response_format: dict[str, Any]) -> dict[str, Any]:
    inner = response_format.get("json_schema") or response_format
    schema = inner.get("schema")
    if not isinstance(schema, dict):
        raise Untranslatable("response_format: Bedrock Converse needs a JSON schema")
    definition = {"schema": orjson.dumps(schema).decode(), "name": inner.get("name") or "response"}
    return {"type": "json_schema", "structure": {"jsonSchema": definition}}


# --- answers --------------------------------------------------------------------------------


def decode_response(doc: dict[str, Any]) -> ChatResponse:
    # Converse answers carry neither an id nor the model: the bridge fills them (request id, routed model).
    parts: list[Part] = []
    for block in ((doc.get("output") or {}).get("message") or {}).get("content") or []:
        _decode_block(block, parts)
    stop: StopReason = stop_reason_of(str(doc.get("stopReason", "end_turn")))
    return ChatResponse(id="", model="", content=parts, stop_reason=stop, usage=usage_from(doc.get("usage")))


def encode_response(response: ChatResponse) -> dict[str, Any]:
    content = [block for i, part in enumerate(response.content) for block in _encode_part(part, i)]
    u = response.usage
    usage = {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total}
    if u.cache_read_tokens:
        usage["cacheReadInputTokens"] = u.cache_read_tokens
    if u.cache_write_tokens:
        usage["cacheWriteInputTokens"] = u.cache_write_tokens
    stop = {"refusal": "content_filtered", "pause_turn": "end_turn", "error": "end_turn"}.get(
        response.stop_reason, response.stop_reason
    )
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
        "metrics": {"latencyMs": 0},
    }


def decode_error(status: int, body: bytes) -> Failure:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Failure(status, body.decode("utf-8", "replace")[:500])
    if not isinstance(doc, dict):
        return Failure(status, str(doc)[:500])
    message = doc.get("message") or doc.get("Message") or ""
    kind = str(doc.get("__type", "")).rpartition("#")[2]
    return Failure(status, str(message), kind)


class BedrockConverseCodec:
    wire = WIRE
    tool_names = TOOL_NAMES

    def decode_request(self, doc: dict[str, Any], model: str | None = None) -> ChatRequest:
        return decode_request(doc, model)

    def encode_request(self, request: ChatRequest) -> dict[str, Any]:
        return encode_request(request)

    def decode_response(self, doc: dict[str, Any]) -> ChatResponse:
        return decode_response(doc)

    def encode_response(self, response: ChatResponse, request: ChatRequest | None = None) -> dict[str, Any]:
        return encode_response(response)

    def decode_error(self, status: int, body: bytes) -> Failure:
        return decode_error(status, body)

    def stream_decoder(self) -> ConverseStreamDecoder:
        return ConverseStreamDecoder()

    def stream_encoder(self, request: ChatRequest) -> ConverseStreamEncoder:
        return ConverseStreamEncoder()


CODEC = BedrockConverseCodec()
