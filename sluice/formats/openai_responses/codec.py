"""OpenAI Responses API <-> canonical (https://platform.openai.com/docs/api-reference/responses).

This is what Codex speaks: `store: false`, `include: ["reasoning.encrypted_content"]`,
`prompt_cache_key` and the like travel as extras (read back only by this codec); developer
messages are system messages (leading ones join `instructions` as the system prompt, later ones
stay in place).

What does not map, and why:
- `previous_response_id` / `conversation` point at state stored at OpenAI: refused, since no
  other provider can see that history.
- `namespace` tools are flattened into function tools, `additional_tools` input items read, and
  the hosted `web_search` is optional (dropped, and recorded, for a target that cannot run it):
  see `openai_responses_tools`.
  `custom` (freeform) tools become functions of one string argument, `input`.
- Other tools (`local_shell`, `file_search`, `mcp`, ...) are native tools: kept for Responses,
  refused by other formats. So are their call items in the history (`local_shell_call`, ...),
  and `item_reference`.
- A `reasoning` item becomes a thinking block whose signature is `encrypted_content` and whose
  text is the summary parts joined by a blank line; it goes back only to Responses, and only
  when it has encrypted content (without it, the item is a reference to stored state).
  Another vendor's signed blocks in an answer go out as reasoning items too, sealed into
  `encrypted_content` (codec_support.seal); Codex sends them back and they decode to the blocks
  as they were, for that vendor (Claude's thinking round trip).
- `user` longer than 64 characters goes as its hash; a reasoning model (GPT-5, o-series) gets the
  default sampling only (temperature and top_p other than 1 are dropped).
- Function tools go out with `strict: false` (the Responses default is strict, which rejects
  schemas written for other formats). Tool results have no error flag: `is_error` is dropped.
- `stop` sequences have no equivalent: refused. `top_k` is dropped (a sampling hint).
"""

from __future__ import annotations

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
from sluice.formats.codec_support import (
    body_text,
    carried,
    data_url,
    end_user_id,
    json_body,
    merge_into,
    native_tools,
    parse_data_url,
    unseal,
)
from sluice.formats.openai_common import failure_from, sampling_for, takes_reasoning, usage_from
from sluice.formats.openai_responses.stream import (
    ResponsesStreamDecoder,
    ResponsesStreamEncoder,
    encode_usage,
    foreign_reasoning_item,
    response_object,
    status_fields,
    stop_reason,
)
from sluice.formats.openai_responses.tools import (
    call_fields,
    call_name,
    custom_call,
    decode_tools,
    encode_tools,
    freeform_input,
    freeform_names,
    namespaces,
)
from sluice.formats.tool_names import OPENAI as TOOL_NAMES

WIRE = WireFormat.OPENAI_RESPONSES.value
USER_LIMIT = 64  # as in Chat Completions: a longer `user` is refused
_EFFORTS = ("minimal", "low", "medium", "high")
_KNOWN = {
    "model", "instructions", "input", "tools", "tool_choice", "parallel_tool_calls", "max_output_tokens",
    "temperature", "top_p", "stream", "reasoning", "text", "user",
}  # fmt: skip


class OpenAIResponsesCodec:
    wire = WireFormat.OPENAI_RESPONSES
    tool_names = TOOL_NAMES

    def decode_request(self, doc: dict[str, Any], model: str | None = None) -> ChatRequest:
        for key in ("previous_response_id", "conversation"):
            if doc.get(key):
                raise Untranslatable(f"{WIRE}: {key} refers to history stored at OpenAI; send the full input instead")
        extra = {k: v for k, v in doc.items() if k not in _KNOWN}
        system = [Text(doc["instructions"])] if doc.get("instructions") else []
        messages: list[Message] = []
        tools: list[Tool] = []
        decode_tools(doc.get("tools"), tools)
        raw_input = doc.get("input") or []
        if isinstance(raw_input, str):
            raw_input = [{"type": "message", "role": "user", "content": raw_input}]
        for item in raw_input:
            if item.get("type") == "additional_tools":  # Codex's tools, for some models
                decode_tools(item.get("tools"), tools)
            else:
                _decode_item(item, system, messages)
        reasoning = None
        if raw := doc.get("reasoning"):
            effort = raw.get("effort")
            if effort is not None and effort not in _EFFORTS:
                extra["reasoning"] = raw  # e.g. "none" or "xhigh": only this format knows them
            if effort != "none":
                known = effort if effort in _EFFORTS else None
                reasoning = Reasoning(effort=known, summary=raw.get("summary") is not None)
        text = dict(doc.get("text") or {})
        fmt = text.pop("format", None)
        if text:
            extra["text"] = text
        return ChatRequest(
            model=model or doc.get("model", ""),
            messages=messages,
            system=system,
            tools=tools,
            tool_choice=_decode_tool_choice(doc.get("tool_choice"), doc.get("parallel_tool_calls")),
            max_tokens=doc.get("max_output_tokens"),
            temperature=doc.get("temperature"),
            top_p=doc.get("top_p"),
            stream=bool(doc.get("stream", False)),
            reasoning=reasoning,
            response_format=_decode_format(fmt),
            user=doc.get("user"),
            extra={WIRE: extra} if extra else {},
        )

    def encode_request(self, request: ChatRequest) -> dict[str, Any]:
        if request.stop:
            raise Untranslatable(f"{WIRE}: stop sequences have no equivalent in the Responses API")
        own = dict(request.extra.get(WIRE, {}))
        body: dict[str, Any] = {"model": request.model}
        items: list[dict[str, Any]] = []
        if request.system:
            body["instructions"] = request.system[0].text
            if len(request.system) > 1:
                items.append(_message("developer", [_input_part(t) for t in request.system[1:]]))
        groups, freeform = namespaces(request.tools), freeform_names(request.tools)
        custom = {p.id for m in request.messages for p in m.parts if isinstance(p, ToolCall) and p.name in freeform}
        for m in request.messages:
            items.extend(_encode_message(m, groups, custom))
        body["input"] = items
        native_tools(request.tools, WIRE)  # refuses another format's vendor tools
        tools = encode_tools(request.tools)
        if tools:
            body["tools"] = tools
        if c := request.tool_choice:
            body["tool_choice"] = {"type": "function", "name": c.name} if c.mode == "tool" else _CHOICE_OUT[c.mode]
            if c.parallel is not None and tools:
                body["parallel_tool_calls"] = c.parallel
        for key, value in (
            ("max_output_tokens", request.max_tokens),
            ("user", end_user_id(request.user, USER_LIMIT)),
        ):
            if value is not None:
                body[key] = value
        body.update(sampling_for(request.model, request.temperature, request.top_p))
        if request.stream:
            body["stream"] = True
        if (r := request.reasoning) and takes_reasoning(request.model):
            reasoning: dict[str, Any] = {"effort": r.effort or _effort_for(r.budget_tokens)}
            if r.summary:
                reasoning["summary"] = "auto"
            body["reasoning"] = own.pop("reasoning", reasoning)
        text = dict(own.pop("text", {}))
        if request.response_format:
            text["format"] = _encode_format(request.response_format)
        if text:
            body["text"] = text
        for key, value in own.items():
            body.setdefault(key, value)
        return body

    def decode_response(self, doc: dict[str, Any]) -> ChatResponse:
        content: list[Part] = []
        refused = False
        for item in doc.get("output") or ():
            kind = item.get("type")
            if kind == "message":
                for c in item.get("content") or ():
                    if c.get("type") in ("output_text", "refusal"):
                        content.append(Text(c.get("text") or c.get("refusal") or ""))
                        refused = refused or c.get("type") == "refusal"
            elif kind == "function_call":
                content.append(ToolCall(item.get("call_id", ""), call_name(item), item.get("arguments", "")))
            elif kind == "custom_tool_call":
                content.append(custom_call(item))
            elif kind == "reasoning":
                content.extend(_thinking(item))
        has_calls = any(isinstance(p, ToolCall) for p in content)
        stop = "refusal" if refused else stop_reason(doc, has_calls)
        return ChatResponse(doc.get("id", ""), doc.get("model", ""), content, stop, usage=usage_from(doc.get("usage")))

    def encode_response(self, response: ChatResponse, request: ChatRequest | None = None) -> dict[str, Any]:
        groups = namespaces(request.tools) if request is not None else {}
        freeform = freeform_names(request.tools) if request is not None else frozenset()
        output: list[dict[str, Any]] = []
        for n, p in enumerate(response.content):
            if isinstance(p, Text):
                part = {"type": "output_text", "text": p.text, "annotations": []}
                output.append({"id": f"msg_{n}", "type": "message", "status": "completed", "role": "assistant"})
                output[-1]["content"] = [part]
            elif isinstance(p, ToolCall) and p.name in freeform:
                call = {"id": f"ctc_{n}", "type": "custom_tool_call", "status": "completed", "call_id": p.id}
                output.append(call | call_fields(p.name, groups) | {"input": freeform_input(p.arguments_json)})
            elif isinstance(p, ToolCall):
                call = {"id": f"fc_{n}", "type": "function_call", "status": "completed", "arguments": p.arguments_json}
                output.append(call | {"call_id": p.id, **call_fields(p.name, groups)})
            elif isinstance(p, Thinking) and p.origin == WIRE:
                output.append({"id": f"rs_{n}", **_reasoning_item(p)})
            elif isinstance(p, Thinking) and carried([p]):
                # Another vendor's signed reasoning: Codex sends reasoning items back as it got them.
                output.append({"id": f"rs_{n}", **foreign_reasoning_item(p)})
        fields = status_fields(response.stop_reason)
        return response_object(response.id, response.model, output, usage=encode_usage(response.usage), **fields)

    def decode_error(self, status: int, body: bytes) -> Failure:
        doc = json_body(body)
        error = doc.get("error") if doc else None
        if isinstance(error, dict):
            return failure_from(error, status)
        return Failure(status, body_text(body))

    def stream_decoder(self) -> ResponsesStreamDecoder:
        return ResponsesStreamDecoder()

    def stream_encoder(self, request: ChatRequest) -> ResponsesStreamEncoder:
        return ResponsesStreamEncoder(request)


_CHOICE_OUT = {"auto": "auto", "none": "none", "any": "required"}


def _effort_for(budget: int | None) -> str:
    if budget is None:
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


# --- decoding helpers ------------------------------------------------------------------------


def _decode_item(item: dict[str, Any], system: list[Text], messages: list[Message]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        parts = _decode_content(item.get("content"))
        if role in ("system", "developer"):
            texts = [p for p in parts if isinstance(p, Text)]
            if messages:
                messages.append(Message("system", list(texts)))
            else:
                system.extend(texts)
        elif role == "assistant":
            merge_into(messages, "assistant", parts)
        elif messages and messages[-1].role == "user" and all(isinstance(p, ToolResult) for p in messages[-1].parts):
            messages[-1].parts.extend(parts)  # the rest of the turn that answered the tool calls
        else:
            messages.append(Message("user", parts))
    elif kind == "function_call":
        call = ToolCall(item.get("call_id", ""), call_name(item), item.get("arguments", ""))
        merge_into(messages, "assistant", [call])
    elif kind == "custom_tool_call":
        merge_into(messages, "assistant", [custom_call(item)])
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        content = _decode_content(output) if output else []
        result = ToolResult(item.get("call_id", ""), [p for p in content if isinstance(p, Text | Image | Document)])
        merge_into(messages, "user", [result])
    elif kind == "reasoning":
        merge_into(messages, "assistant", list(_thinking(item)))
    else:
        raise Untranslatable(f"{WIRE}: input item type {kind!r} cannot be translated to another format")


def _thinking(item: dict[str, Any]) -> list[Thinking]:
    """A reasoning item: OpenAI's own, or another vendor's blocks the gateway sealed into its
    encrypted_content on the way out (see codec_support.seal)."""
    restored = unseal(item.get("encrypted_content"))
    if restored is not None:
        return restored
    summary = "\n\n".join(s.get("text", "") for s in item.get("summary") or ())
    return [Thinking(summary, signature=item.get("encrypted_content"), origin=WIRE)]


def _decode_content(content: Any) -> list[Part]:
    if content is None:
        return []
    if isinstance(content, str):
        return [Text(content)]
    parts: list[Part] = []
    for c in content:
        kind = c.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append(Text(c.get("text", "")))
        elif kind == "refusal":
            parts.append(Text(c.get("refusal", "")))
        elif kind == "input_image" and c.get("image_url"):
            inline = parse_data_url(c["image_url"])
            parts.append(Image(inline[0], data=inline[1]) if inline else Image("", url=c["image_url"]))
        elif kind == "input_file" and c.get("file_data"):
            inline = parse_data_url(c["file_data"])
            media, data = inline or ("application/pdf", c["file_data"])
            parts.append(Document(media, data=data, name=c.get("filename")))
        elif kind == "input_file" and c.get("file_url"):
            parts.append(Document("application/pdf", url=c["file_url"], name=c.get("filename")))
        else:
            raise Untranslatable(f"{WIRE}: content part {kind!r} (or a file_id reference) cannot be translated")
    return parts


def _decode_tool_choice(raw: Any, parallel: bool | None) -> ToolChoice | None:
    if raw is None:
        return None if parallel is None else ToolChoice(parallel=parallel)
    if isinstance(raw, str):
        return ToolChoice(mode="any" if raw == "required" else raw, parallel=parallel)  # type: ignore[arg-type]
    if raw.get("type") == "function":
        return ToolChoice(mode="tool", name=raw.get("name"), parallel=parallel)
    raise Untranslatable(f"{WIRE}: tool_choice {raw.get('type')!r} cannot be translated")


def _decode_format(fmt: dict[str, Any] | None) -> dict[str, Any] | None:
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_schema":
        schema = {k: v for k, v in fmt.items() if k != "type"}
        return {"type": "json_schema", "json_schema": schema}
    return dict(fmt)


# --- encoding helpers ------------------------------------------------------------------------


def _message(role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": role, "content": content}


def _input_part(p: Part) -> dict[str, Any]:
    if isinstance(p, Text):
        return {"type": "input_text", "text": p.text}
    if isinstance(p, Image):
        return {"type": "input_image", "image_url": data_url(p.media_type, p.data) if p.data is not None else p.url}
    if isinstance(p, Document):
        if p.data is None:
            return {"type": "input_file", "file_url": p.url}
        out = {"type": "input_file", "file_data": data_url(p.media_type, p.data)}
        return out | ({"filename": p.name} if p.name else {})
    raise Untranslatable(f"{WIRE}: a {type(p).__name__} part cannot go in a user message")


def _reasoning_item(p: Thinking) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": p.text}] if p.text else []
    item: dict[str, Any] = {"type": "reasoning", "summary": summary}
    if p.signature:
        item["encrypted_content"] = p.signature
    return item


def _encode_message(m: Message, groups: dict[str, tuple[str, str]], custom: set[str]) -> list[dict[str, Any]]:
    if m.role == "system":
        return [_message("developer", [_input_part(p) for p in m.parts if isinstance(p, Text)])]
    items: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []  # content parts of the message item being built

    def flush() -> None:
        if pending:
            items.append(_message(m.role, list(pending)))
            pending.clear()

    for p in m.parts:
        if isinstance(p, ToolCall):
            flush()
            fields = call_fields(p.name, groups)
            if p.id in custom:
                items.append(
                    {"type": "custom_tool_call", "call_id": p.id, **fields, "input": freeform_input(p.arguments_json)}
                )
            else:
                items.append({"type": "function_call", "call_id": p.id, **fields, "arguments": p.arguments_json})
        elif isinstance(p, ToolResult):
            flush()
            kind = "custom_tool_call_output" if p.call_id in custom else "function_call_output"
            items.append({"type": kind, "call_id": p.call_id, "output": _tool_output(p)})
        elif isinstance(p, Thinking):
            if p.origin == WIRE and p.signature:
                flush()
                items.append(_reasoning_item(p))
        elif m.role == "assistant" and isinstance(p, Text):
            pending.append({"type": "output_text", "text": p.text})
        else:
            pending.append(_input_part(p))
    flush()
    return items


def _tool_output(p: ToolResult) -> str | list[dict[str, Any]]:
    if not p.content:
        return ""
    if len(p.content) == 1 and isinstance(p.content[0], Text):
        return p.content[0].text
    return [_input_part(x) for x in p.content]


def _encode_format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", **(fmt.get("json_schema") or {})}
    return dict(fmt)
