"""OpenAI Chat Completions <-> canonical (https://platform.openai.com/docs/api-reference/chat).

What does not map, and why:
- `system` and `developer` messages both decode to system; mid-conversation ones stay in place.
  Leading ones form the canonical system prompt.
- Tool results have no error flag and tool messages take text only: `is_error` is dropped and
  images or files a tool returned follow the tool messages in a user message.
- Thinking is never sent in requests (Chat has no field for it); in answers, Chat-origin
  reasoning (`reasoning_content`, as DeepSeek-style vendors stream it) is kept.
- `cache_control` breakpoints, image `detail`, message `name`, audio input and `file_id`
  references have no canonical form: the first three are dropped, the last two refused.
- `max_tokens` goes out as `max_completion_tokens` (the reasoning models refuse `max_tokens`);
  `top_k` has no Chat equivalent and is dropped (a sampling hint, never content).
"""

from __future__ import annotations

from typing import Any, Literal

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
from sluice.formats.codec_support import (
    body_text,
    carry_in_ids,
    data_url,
    end_user_id,
    id_without,
    json_body,
    native_tools,
    parse_data_url,
    unfold_calls,
    with_safe_ids,
)
from sluice.formats.openai_chat.stream import (
    OpenAIChatStreamDecoder,
    OpenAIChatStreamEncoder,
    encode_usage,
    finish_reason,
    stop_reason,
)
from sluice.formats.openai_common import failure_from, sampling_for, takes_reasoning, usage_from
from sluice.formats.tool_names import OPENAI as TOOL_NAMES

WIRE = WireFormat.OPENAI_CHAT.value
USER_LIMIT = 64  # OpenAI refuses a longer `user` ("string too long")
CALL_ID_LIMIT = 40
_EFFORTS = ("minimal", "low", "medium", "high")
_KNOWN = {
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "stop", "stream", "stream_options", "reasoning_effort", "response_format", "user",
}  # fmt: skip


class OpenAIChatCodec:
    wire = WireFormat.OPENAI_CHAT
    tool_names = TOOL_NAMES

    def decode_request(self, doc: dict[str, Any], model: str | None = None) -> ChatRequest:
        extra = {k: v for k, v in doc.items() if k not in _KNOWN}
        stream = bool(doc.get("stream", False))
        options = doc.get("stream_options")
        if stream and options is None:
            extra["stream_options"] = {"include_usage": False}  # what the caller will see
        elif options is not None and options != {"include_usage": True}:
            extra["stream_options"] = options
        system: list[Text] = []
        messages: list[Message] = []
        for m in doc.get("messages") or ():
            _decode_message(m, system, messages)
        stop = doc.get("stop")
        effort = doc.get("reasoning_effort")
        if effort is not None and effort not in _EFFORTS:
            extra["reasoning_effort"] = effort
        response_format = doc.get("response_format")
        return ChatRequest(
            model=model or doc.get("model", ""),
            messages=messages,
            system=system,
            tools=[_decode_tool(t) for t in doc.get("tools") or ()],
            tool_choice=_decode_tool_choice(doc.get("tool_choice"), doc.get("parallel_tool_calls")),
            max_tokens=doc.get("max_completion_tokens") or doc.get("max_tokens"),
            temperature=doc.get("temperature"),
            top_p=doc.get("top_p"),
            stop=[stop] if isinstance(stop, str) else list(stop or ()),
            stream=stream,
            reasoning=Reasoning(effort=effort) if effort in _EFFORTS else None,
            response_format=None if not response_format or response_format.get("type") == "text" else response_format,
            user=doc.get("user"),
            extra={WIRE: extra} if extra else {},
        )

    def encode_request(self, request: ChatRequest) -> dict[str, Any]:
        own = dict(request.extra.get(WIRE, {}))
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": _text_content(request.system)})
        for m in request.messages:
            # OpenAI refuses a tool call id over 40 characters ("string too long").
            messages.extend(_encode_message(Message(m.role, with_safe_ids(m.parts, CALL_ID_LIMIT, "call_"))))
        body: dict[str, Any] = {"model": request.model, "messages": messages}
        tools = [_encode_tool(t) for t in request.tools if t.native is None]
        tools += native_tools(request.tools, WIRE)
        if tools:
            body["tools"] = tools
        if c := request.tool_choice:
            body["tool_choice"] = _encode_tool_choice(c)
            if c.parallel is not None and tools:
                body["parallel_tool_calls"] = c.parallel
        if request.max_tokens is not None:
            body["max_completion_tokens"] = request.max_tokens
        body.update(sampling_for(request.model, request.temperature, request.top_p))
        if request.stop:
            body["stop"] = list(request.stop)
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}  # the gateway meters every stream
            own.pop("stream_options", None)
        if (r := request.reasoning) and takes_reasoning(request.model):
            body["reasoning_effort"] = r.effort or _effort_for(r.budget_tokens)
        if request.response_format:
            body["response_format"] = request.response_format
        if user := end_user_id(request.user, USER_LIMIT):
            body["user"] = user
        for key, value in own.items():
            body.setdefault(key, value)
        return body

    def decode_response(self, doc: dict[str, Any]) -> ChatResponse:
        choice = (doc.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        content: list[Part] = []
        if message.get("reasoning_content"):
            content.append(Thinking(message["reasoning_content"], origin=WIRE))
        if message.get("content"):
            content.append(Text(message["content"]))
        if message.get("refusal"):
            content.append(Text(message["refusal"]))
        calls = [
            ToolCall(c["id"], c["function"]["name"], c["function"].get("arguments", ""))
            for c in message.get("tool_calls") or ()
        ]
        content.extend(calls)
        stop = "refusal" if message.get("refusal") else stop_reason(choice.get("finish_reason"), bool(calls))
        return ChatResponse(doc.get("id", ""), doc.get("model", ""), content, stop, usage=usage_from(doc.get("usage")))

    def encode_response(self, response: ChatResponse, request: ChatRequest | None = None) -> dict[str, Any]:
        text = "".join(p.text for p in response.content if isinstance(p, Text))
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        reasoning = "".join(p.text for p in response.content if isinstance(p, Thinking) and p.origin == WIRE)
        if reasoning:
            message["reasoning_content"] = reasoning
        # Another vendor's signed reasoning rides in the ids of the calls it came before.
        calls = [p for p in carry_in_ids(response.content, WIRE) if isinstance(p, ToolCall)]
        if calls:
            message["tool_calls"] = [_encode_call(c) for c in calls]
        return {
            "id": response.id,
            "object": "chat.completion",
            "created": 0,  # codecs have no clock
            "model": response.model,
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(response.stop_reason)}
            ],
            "usage": encode_usage(response.usage),
        }

    def decode_error(self, status: int, body: bytes) -> Failure:
        doc = json_body(body)
        error = doc.get("error") if doc else None
        if isinstance(error, dict):
            return failure_from(error, status)
        if doc and isinstance(doc.get("message"), str):
            return Failure(status, doc["message"])
        return Failure(status, body_text(body))

    def stream_decoder(self) -> OpenAIChatStreamDecoder:
        return OpenAIChatStreamDecoder()

    def stream_encoder(self, request: ChatRequest) -> OpenAIChatStreamEncoder:
        return OpenAIChatStreamEncoder(request)


def _effort_for(budget: int | None) -> Literal["low", "medium", "high"]:
    if budget is None:
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


# --- decoding helpers ------------------------------------------------------------------------


def _decode_message(m: dict[str, Any], system: list[Text], messages: list[Message]) -> None:
    role = m.get("role")
    content = m.get("content")
    if role in ("system", "developer"):
        texts = [p for p in _decode_content(content) if isinstance(p, Text)]
        if messages:
            messages.append(Message("system", list(texts)))
        else:
            system.extend(texts)
    elif role == "tool":
        texts = [p for p in _decode_content(content) if isinstance(p, Text)]
        result = ToolResult(id_without(str(m.get("tool_call_id", "")))[0], list(texts))
        if messages and messages[-1].role == "user" and all(isinstance(p, ToolResult) for p in messages[-1].parts):
            messages[-1].parts.append(result)
        else:
            messages.append(Message("user", [result]))
    elif role == "user":
        parts = _decode_content(content)
        last = messages[-1] if messages else None
        # A user message right after tool messages is the rest of the same turn.
        if last and last.role == "user" and last.parts and all(isinstance(p, ToolResult) for p in last.parts):
            last.parts.extend(parts)
        else:
            messages.append(Message("user", parts))
    elif role == "assistant":
        parts = _decode_content(content)
        for c in m.get("tool_calls") or ():
            function = c.get("function") or {}
            parts.append(ToolCall(c.get("id", ""), function.get("name", ""), function.get("arguments", "")))
        messages.append(Message("assistant", unfold_calls(parts)))
    else:
        raise Untranslatable(f"{WIRE}: message role {role!r} cannot be translated")


def _decode_content(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    parts: list[Part] = []
    for p in content:
        kind = p.get("type")
        if kind in ("text", "refusal"):
            parts.append(Text(p.get(kind, "")))
        elif kind == "image_url":
            url = (p.get("image_url") or {}).get("url", "")
            inline = parse_data_url(url)
            parts.append(Image(inline[0], data=inline[1]) if inline else Image("", url=url))
        elif kind == "file" and (p.get("file") or {}).get("file_data"):
            file = p["file"]
            inline = parse_data_url(file["file_data"])
            media, data = inline or ("application/pdf", file["file_data"])
            parts.append(Document(media, data=data, name=file.get("filename")))
        else:
            raise Untranslatable(f"{WIRE}: content part {kind!r} cannot be translated")
    return parts


def _decode_tool(t: dict[str, Any]) -> Tool:
    if t.get("type") == "function":
        f = t.get("function") or {}
        params = f.get("parameters") or {"type": "object", "properties": {}}
        return Tool(f.get("name", ""), f.get("description", ""), params)
    return Tool(t.get("name") or t.get("type", ""), native=t, origin=WIRE)


def _decode_tool_choice(raw: Any, parallel: bool | None) -> ToolChoice | None:
    if raw is None:
        return None if parallel is None else ToolChoice(parallel=parallel)
    if isinstance(raw, str):
        mode = {"required": "any"}.get(raw, raw)
        return ToolChoice(mode=mode, parallel=parallel)  # type: ignore[arg-type]
    if raw.get("type") != "function":
        raise Untranslatable(f"{WIRE}: tool_choice {raw.get('type')!r} cannot be translated")
    return ToolChoice(mode="tool", name=(raw.get("function") or {}).get("name"), parallel=parallel)


# --- encoding helpers ------------------------------------------------------------------------


def _text_content(texts: list[Text]) -> str | list[dict[str, Any]]:
    if len(texts) == 1:
        return texts[0].text
    return [{"type": "text", "text": t.text} for t in texts]


def _encode_message(m: Message) -> list[dict[str, Any]]:
    if m.role == "system":
        return [{"role": "system", "content": _text_content([p for p in m.parts if isinstance(p, Text)])}]
    if m.role == "assistant":
        texts = [p for p in m.parts if isinstance(p, Text)]
        calls = [p for p in m.parts if isinstance(p, ToolCall)]
        if not texts and not calls:
            return []  # only another vendor's thinking was here
        out: dict[str, Any] = {"role": "assistant", "content": _text_content(texts) if texts else None}
        if calls:
            out["tool_calls"] = [_encode_call(c) for c in calls]
        return [out]
    messages: list[dict[str, Any]] = []
    rest: list[Part] = []
    for p in m.parts:
        if isinstance(p, ToolResult):
            texts = [x for x in p.content if isinstance(x, Text)]
            content = _text_content(texts) if texts else ""
            messages.append({"role": "tool", "tool_call_id": p.call_id, "content": content})
            rest.extend(x for x in p.content if not isinstance(x, Text))
        else:
            rest.append(p)
    if rest:
        if len(rest) == 1 and isinstance(rest[0], Text):
            messages.append({"role": "user", "content": rest[0].text})
        else:
            messages.append({"role": "user", "content": [_encode_part(p) for p in rest]})
    return messages


def _encode_part(p: Part) -> dict[str, Any]:
    if isinstance(p, Text):
        return {"type": "text", "text": p.text}
    if isinstance(p, Image):
        url = data_url(p.media_type, p.data) if p.data is not None else p.url
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(p, Document):
        if p.data is None:
            raise Untranslatable(f"{WIRE}: a document given by URL cannot be sent (only inline file data)")
        file: dict[str, Any] = {"file_data": data_url(p.media_type, p.data)}
        if p.name:
            file["filename"] = p.name
        return {"type": "file", "file": file}
    raise Untranslatable(f"{WIRE}: a {type(p).__name__} part cannot go in a user message")


def _encode_call(c: ToolCall) -> dict[str, Any]:
    return {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}


def _encode_tool(t: Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": t.name}
    if t.description:
        function["description"] = t.description
    function["parameters"] = t.parameters
    return {"type": "function", "function": function}


def _encode_tool_choice(c: ToolChoice) -> Any:
    if c.mode == "tool":
        return {"type": "function", "function": {"name": c.name}}
    return {"any": "required"}.get(c.mode, c.mode)
