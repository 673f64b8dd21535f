"""Gemini generateContent <-> canonical (https://ai.google.dev/api/generate-content).

The model comes from the URL (`models/{model}:generateContent`), so decode_request takes it as an
argument and encode_request leaves it out of the body.

What does not map, and why:
- Calls usually carry no id: one is derived (stable, see gemini_stream.call_id) and a function
  response without id is matched to the earliest unanswered call of the same name. Ids that
  came from elsewhere go out in `functionCall.id` / `functionResponse.id`; names are looked up
  from the conversation when a tool result does not carry one.
- A thought signature on a non-thought part (Gemini's signed function calls) is a signature-only
  thinking block just before that part, and is attached to the following part again on the way
  out. Thoughts without a signature are not sent back (Gemini reads nothing from them).
- A `system` message in mid-conversation becomes a user turn `<system>...</system>` in place.
- Images by URL: only Google file URIs (Files API, gs://) can be sent; any other URL is refused.
  Images or files returned by a tool follow its functionResponse as separate parts. A tool
  result goes out as `{"result": text}` or `{"error": text}`; a JSON object result as itself.
- Field names may come in snake_case (`parameters_json_schema`, some google-genai versions) as
  Google's API accepts: the request is brought to camelCase first (`gemini_fields`).
- Gemini tools other than function declarations (googleSearch, codeExecution, urlContext, ...)
  are native tools: kept for Gemini, refused elsewhere. `parallel` tool choice has no equivalent
  and is dropped; `stop_sequence` answers say STOP.
"""

from __future__ import annotations

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
    Role,
    Text,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Untranslatable,
)
from sluice.core.types import WireFormat
from sluice.formats.codec_support import body_text, carried, dumps, fold_system, json_body, native_tools, seal, unseal
from sluice.formats.gemini.fields import camel_request
from sluice.formats.gemini.stream import (
    GeminiStreamDecoder,
    GeminiStreamEncoder,
    call_id,
    call_part,
    encode_usage,
    finish_reason,
    status_for,
    stop_reason,
)
from sluice.formats.gemini.wire import usage_from
from sluice.formats.tool_names import GEMINI as TOOL_NAMES

WIRE = WireFormat.GEMINI.value
_EFFORTS = ("minimal", "low", "medium", "high")
_EFFORT_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
_GOOGLE_URIS = ("https://generativelanguage.googleapis.com/", "gs://")
_GENERATION = {
    "maxOutputTokens", "temperature", "topP", "topK", "stopSequences", "responseMimeType", "responseSchema",
    "responseJsonSchema", "thinkingConfig",
}  # fmt: skip


class GeminiCodec:
    wire = WireFormat.GEMINI
    tool_names = TOOL_NAMES

    def decode_request(self, doc: dict[str, Any], model: str | None = None) -> ChatRequest:
        doc = camel_request(doc)  # Google's JSON accepts snake_case field names too
        extra = {k: v for k, v in doc.items() if k not in ("contents", "systemInstruction", "tools", "toolConfig")}
        config = dict(extra.pop("generationConfig", None) or {})
        rest = {k: v for k, v in config.items() if k not in _GENERATION}
        if rest:
            extra["generationConfig"] = rest
        system = doc.get("systemInstruction") or {}
        messages = _decode_contents(doc.get("contents") or [])
        reasoning = None
        thinking = config.get("thinkingConfig") or {}
        budget = thinking.get("thinkingBudget")
        level = str(thinking.get("thinkingLevel") or "").lower() or None
        if budget == 0 or (budget is not None and budget < 0) or (level and level not in _EFFORTS):
            extra["thinkingConfig"] = thinking  # off, dynamic or unknown: only Gemini reads it back
        elif thinking:
            effort = level if level in _EFFORTS else None
            reasoning = Reasoning(effort=effort, budget_tokens=budget, summary=bool(thinking.get("includeThoughts")))  # type: ignore[arg-type]
        return ChatRequest(
            model=model or doc.get("model", ""),
            messages=messages,
            system=[Text(p["text"]) for p in system.get("parts") or () if "text" in p],
            tools=[t for raw in doc.get("tools") or () for t in _decode_tools(raw)],
            tool_choice=_decode_tool_choice((doc.get("toolConfig") or {}).get("functionCallingConfig")),
            max_tokens=config.get("maxOutputTokens"),
            temperature=config.get("temperature"),
            top_p=config.get("topP"),
            top_k=config.get("topK"),
            stop=list(config.get("stopSequences") or ()),
            reasoning=reasoning,
            response_format=_decode_format(config),
            extra={WIRE: extra} if extra else {},
        )

    def encode_request(self, request: ChatRequest) -> dict[str, Any]:
        own = dict(request.extra.get(WIRE, {}))
        names = {p.id: p.name for m in request.messages for p in m.parts if isinstance(p, ToolCall)}
        contents = []
        for m in request.messages:
            if m.role == "system":
                m = fold_system(m)
            parts = _encode_parts(m.parts, names, request=True)
            if parts:
                contents.append({"role": "model" if m.role == "assistant" else "user", "parts": parts})
        body: dict[str, Any] = {"contents": contents}
        if request.system:
            body["systemInstruction"] = {"parts": [{"text": t.text} for t in request.system]}
        declarations = [_encode_tool(t) for t in request.tools if t.native is None]
        tools: list[dict[str, Any]] = [{"functionDeclarations": declarations}] if declarations else []
        tools += native_tools(request.tools, WIRE)
        if tools:
            body["tools"] = tools
        if c := request.tool_choice:
            calling: dict[str, Any] = {"mode": {"auto": "AUTO", "none": "NONE"}.get(c.mode, "ANY")}
            if c.mode == "tool":
                calling["allowedFunctionNames"] = [c.name]
            body["toolConfig"] = {"functionCallingConfig": calling}
        config: dict[str, Any] = dict(own.pop("generationConfig", {}))
        for key, value in (
            ("maxOutputTokens", request.max_tokens),
            ("temperature", request.temperature),
            ("topP", request.top_p),
            ("topK", request.top_k),
        ):
            if value is not None:
                config[key] = value
        if request.stop:
            config["stopSequences"] = list(request.stop)
        if fmt := request.response_format:
            config |= _encode_format(fmt)
        thinking = own.pop("thinkingConfig", None)
        if r := request.reasoning:
            thinking = {"thinkingBudget": r.budget_tokens or _EFFORT_BUDGET[r.effort or "medium"]}
            if r.summary:
                thinking["includeThoughts"] = True
        if thinking is not None:
            config["thinkingConfig"] = thinking
        if config:
            body["generationConfig"] = config
        for key, value in own.items():
            body.setdefault(key, value)
        return body

    def decode_response(self, doc: dict[str, Any]) -> ChatResponse:
        rid = doc.get("responseId", "")
        candidate = (doc.get("candidates") or [{}])[0]
        content: list[Part] = []
        for part in (candidate.get("content") or {}).get("parts") or ():
            content.extend(_decode_part(part, lambda name, args: ""))  # ids derived below
        calls = 0
        for n, p in enumerate(content):
            if isinstance(p, ToolCall):
                if not p.id:
                    content[n] = ToolCall(call_id(rid, calls, p.name, p.arguments_json), p.name, p.arguments_json)
                calls += 1
        finish = candidate.get("finishReason")
        stop = stop_reason(finish, calls > 0)
        if not doc.get("candidates") and (doc.get("promptFeedback") or {}).get("blockReason"):
            stop = "refusal"
        return ChatResponse(rid, doc.get("modelVersion", ""), content, stop, usage=usage_from(doc.get("usageMetadata")))

    def encode_response(self, response: ChatResponse, request: ChatRequest | None = None) -> dict[str, Any]:
        parts = _encode_parts(response.content, {}, request=False)
        candidate = {
            "content": {"role": "model", "parts": parts},
            "finishReason": finish_reason(response.stop_reason),
            "index": 0,
        }
        return {
            "candidates": [candidate],
            "usageMetadata": encode_usage(response.usage),
            "modelVersion": response.model,
            "responseId": response.id,
        }

    def decode_error(self, status: int, body: bytes) -> Failure:
        doc = json_body(body)
        error = doc.get("error") if doc else None
        if isinstance(error, dict):
            return Failure(status or status_for(error), str(error.get("message", "")), str(error.get("status", "")))
        return Failure(status, body_text(body))

    def stream_decoder(self) -> GeminiStreamDecoder:
        return GeminiStreamDecoder()

    def stream_encoder(self, request: ChatRequest) -> GeminiStreamEncoder:
        return GeminiStreamEncoder(request)


# --- decoding helpers ------------------------------------------------------------------------


def _decode_contents(contents: list[dict[str, Any]]) -> list[Message]:
    messages: list[Message] = []
    pending: list[tuple[str, str]] = []  # (name, id) of calls not answered yet
    for i, content in enumerate(contents):
        role: Role = "assistant" if content.get("role") == "model" else "user"
        parts: list[Part] = []
        anchor = 0  # where the turn's reasoning before its next call begins (after the last call)
        for j, raw in enumerate(content.get("parts") or ()):
            for part in _decode_part(raw, lambda name, args, i=i, j=j: f"call_{i}_{j}"):
                if isinstance(part, Thinking) and part.origin != WIRE:
                    # Another vendor's blocks, sealed onto a call: they came before the text that
                    # precedes the call (Anthropic wants a turn to start with its thinking).
                    parts.insert(anchor, part)
                    anchor += 1
                    continue
                if isinstance(part, ToolCall):
                    anchor = len(parts) + 1
                    pending.append((part.name, part.id))
                elif isinstance(part, ToolResult) and not part.call_id:
                    match = next((k for k, (name, _) in enumerate(pending) if name == part.name), None)
                    part.call_id = pending.pop(match)[1] if match is not None else f"call_{i}_{j}"
                elif isinstance(part, ToolResult):
                    pending = [(n, c) for n, c in pending if c != part.call_id]
                parts.append(part)
        messages.append(Message(role, parts))
    return messages


def _decode_part(part: dict[str, Any], make_id: Any) -> list[Part]:
    signature = part.get("thoughtSignature")
    restored = unseal(signature)  # another vendor's reasoning, carried here on the way out
    if part.get("thought"):
        return (
            list(restored)
            if restored is not None
            else [Thinking(part.get("text", ""), signature=signature, origin=WIRE)]
        )
    out: list[Part] = []
    if restored is not None:
        out.extend(restored)
    elif signature:
        out.append(Thinking("", signature=signature, origin=WIRE))
    if "text" in part:
        if part["text"]:
            out.append(Text(part["text"]))
    elif "functionCall" in part:
        call = part["functionCall"]
        args = dumps(call.get("args") or {})
        out.append(ToolCall(call.get("id") or make_id(call.get("name", ""), args), call.get("name", ""), args))
    elif "functionResponse" in part:
        out.append(_decode_result(part["functionResponse"]))
    elif "inlineData" in part or "fileData" in part:
        out.append(_decode_media(part))
    else:
        kinds = ", ".join(k for k in part if k != "thoughtSignature")
        raise Untranslatable(f"{WIRE}: part {kinds!r} cannot be translated to another format")
    return out


def _decode_result(raw: dict[str, Any]) -> ToolResult:
    response = raw.get("response")
    is_error = False
    if isinstance(response, dict) and len(response) == 1:
        key, value = next(iter(response.items()))
        if key in ("output", "result", "content", "error") and isinstance(value, str):
            return ToolResult(raw.get("id") or "", [Text(value)], is_error=key == "error", name=raw.get("name"))
        is_error = key == "error"
    return ToolResult(raw.get("id") or "", [Text(dumps(response))], is_error=is_error, name=raw.get("name"))


def _decode_media(part: dict[str, Any]) -> Image | Document:
    inline = part.get("inlineData")
    media = (inline or part.get("fileData") or {}).get("mimeType", "")
    if inline:
        return (
            Image(media, data=inline.get("data"))
            if media.startswith("image/")
            else Document(media, data=inline.get("data"))
        )
    uri = part["fileData"].get("fileUri")
    return Image(media, url=uri) if media.startswith("image/") else Document(media, url=uri)


def _decode_tools(raw: dict[str, Any]) -> list[Tool]:
    tools = []
    for key, value in raw.items():
        if key == "functionDeclarations":
            for f in value or ():
                params = f.get("parametersJsonSchema") or _json_schema(f.get("parameters"))
                tools.append(
                    Tool(f.get("name", ""), f.get("description", ""), params or {"type": "object", "properties": {}})
                )
        else:
            tools.append(Tool(key, native={key: value}, origin=WIRE))
    return tools


def _json_schema(schema: Any) -> Any:
    """Gemini's OpenAPI-style `parameters` spell types in capitals; JSON Schema does not."""
    if isinstance(schema, dict):
        return {k: (v.lower() if k == "type" and isinstance(v, str) else _json_schema(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_json_schema(v) for v in schema]
    return schema


def _decode_tool_choice(raw: dict[str, Any] | None) -> ToolChoice | None:
    if not raw or not raw.get("mode"):
        return None
    mode = raw["mode"]
    names = raw.get("allowedFunctionNames") or []
    if mode == "ANY" and len(names) == 1:
        return ToolChoice("tool", name=names[0])
    return ToolChoice({"ANY": "any", "NONE": "none"}.get(mode, "auto"))  # type: ignore[arg-type]


def _decode_format(config: dict[str, Any]) -> dict[str, Any] | None:
    if config.get("responseMimeType") != "application/json":
        return None
    schema = config.get("responseJsonSchema") or _json_schema(config.get("responseSchema"))
    if schema is None:
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


# --- encoding helpers ------------------------------------------------------------------------


def _encode_parts(parts: list[Part], names: dict[str, str], *, request: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    signature: str | None = None
    foreign: list[Thinking] = []  # another vendor's signed reasoning, for an answer's next part
    for p in parts:
        if isinstance(p, Thinking):
            if p.origin != WIRE and not request and carried([p]):
                foreign.append(p)  # sealed onto the next function call (or the last part)
                continue
            if p.origin != WIRE or p.redacted:
                continue
            if not p.text and p.signature:
                signature = p.signature  # belongs on the part that follows
            elif p.signature or not request:
                thought = {"text": p.text, "thought": True}
                out.append(thought | ({"thoughtSignature": p.signature} if p.signature else {}))
            continue
        encoded = _encode_part(p, names)
        if foreign and isinstance(p, ToolCall):
            encoded[0]["thoughtSignature"], foreign, signature = seal(foreign), [], None
        elif signature:
            encoded[0]["thoughtSignature"], signature = signature, None
        out.extend(encoded)
    if foreign:
        signature = seal(foreign)
    if signature:
        out.append({"text": "", "thoughtSignature": signature})
    return out


def _encode_part(p: Part, names: dict[str, str]) -> list[dict[str, Any]]:
    if isinstance(p, Text):
        return [{"text": p.text}]
    if isinstance(p, Image | Document):
        return [_encode_media(p)]
    if isinstance(p, ToolCall):
        return [call_part(p)]
    if isinstance(p, ToolResult):
        name = p.name or names.get(p.call_id)
        if not name:
            raise Untranslatable(f"{WIRE}: the tool result for call {p.call_id!r} names no function")
        texts = "\n".join(x.text for x in p.content if isinstance(x, Text))
        response = {"error" if p.is_error else "result": texts}
        if not p.is_error:
            try:
                value = orjson.loads(texts)
                response = value if isinstance(value, dict) and len(value) != 1 else response
            except orjson.JSONDecodeError:
                pass
        result = {"functionResponse": {"id": p.call_id, "name": name, "response": response}}
        return [result, *(_encode_media(x) for x in p.content if not isinstance(x, Text))]
    raise Untranslatable(f"{WIRE}: a {type(p).__name__} part cannot be sent")  # pragma: no cover


def _encode_media(p: Image | Document) -> dict[str, Any]:
    if p.data is not None:
        return {"inlineData": {"mimeType": p.media_type, "data": p.data}}
    if not (p.url or "").startswith(_GOOGLE_URIS):
        raise Untranslatable(f"{WIRE}: files by URL must be Google file URIs (Files API or gs://), not {p.url!r}")
    return {"fileData": {"mimeType": p.media_type, "fileUri": p.url}}


def _encode_tool(t: Tool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": t.name}
    if t.description:
        declaration["description"] = t.description
    declaration["parametersJsonSchema"] = t.parameters
    return declaration


def _encode_format(fmt: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"responseMimeType": "application/json"}
    if fmt.get("type") == "json_schema":
        out["responseJsonSchema"] = (fmt.get("json_schema") or {}).get("schema") or {}
    return out
