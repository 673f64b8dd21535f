"""OpenAI Responses API streams <-> canonical stream events
(https://platform.openai.com/docs/api-reference/responses-streaming).

Each output item is one canonical block (a message item: one block per content part). A
reasoning item's summary parts are joined with a blank line, as `decode_response` joins them, and
its `encrypted_content` (sent whole in `response.output_item.done`) is the block's signature.
Failures go out as `response.failed`, which Codex reports with the error's code and message.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.core.canonical import (
    BlockStart,
    BlockStop,
    ChatRequest,
    Failure,
    Finish,
    Start,
    StopReason,
    StreamEvent,
    TextDelta,
    Thinking,
    ThinkingDelta,
    ToolArgsDelta,
)
from sluice.core.types import Usage, WireFormat
from sluice.formats.codec_support import JsonEventDecoder, carried, seal
from sluice.formats.openai_common import failure_from, usage_from
from sluice.formats.openai_responses.tools import call_fields, call_name, freeform_input, freeform_names, namespaces
from sluice.formats.sse import encode

WIRE = WireFormat.OPENAI_RESPONSES.value
_TERMINAL = ("response.completed", "response.incomplete")
_OWN_CODES = {"insufficient_quota", "context_length_exceeded", "rate_limit_exceeded", "invalid_prompt", "server_error"}
_CODES = {400: "invalid_request_error", 401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}


def stop_reason(response: dict[str, Any], tool_calls: bool) -> StopReason:
    status = response.get("status")
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "refusal" if reason == "content_filter" else "max_tokens"
    if status == "failed":
        return "error"
    return "tool_use" if tool_calls else "end_turn"


def status_fields(stop: StopReason) -> dict[str, Any]:
    if stop == "max_tokens":
        return {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "error": None}
    if stop == "refusal":
        return {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "error": None}
    if stop == "error":
        error = {"code": "server_error", "message": "the model stopped with an error"}
        return {"status": "failed", "incomplete_details": None, "error": error}
    return {"status": "completed", "incomplete_details": None, "error": None}


def encode_usage(u: Usage) -> dict[str, Any]:
    """input_tokens counts every prompt token, cached or written to the cache alike."""
    prompt = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + u.output_tokens,
    }


def foreign_reasoning_item(p: Thinking) -> dict[str, Any]:
    """Another vendor's signed reasoning block as a reasoning item (its text as the summary)."""
    summary = [{"type": "summary_text", "text": p.text}] if p.text and not p.redacted else []
    return {"type": "reasoning", "summary": summary, "encrypted_content": seal([p])}


def response_object(rid: str, model: str, output: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": 0,  # codecs have no clock
        "status": "in_progress",
        "model": model,
        "output": output,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
        **fields,
    }


class ResponsesStreamDecoder(JsonEventDecoder):
    def __init__(self) -> None:
        super().__init__()
        self._items: set[int] = set()  # output indexes that opened a block
        self._args_seen = False

    def _event(self, doc: dict[str, Any]) -> list[StreamEvent]:
        kind = doc.get("type", "")
        blocks = self._blocks
        if kind == "response.created":
            blocks.started = True
            response = doc.get("response") or {}
            return [Start(response.get("id", ""), response.get("model", ""))]
        if kind == "response.output_item.added":
            return self._item_added(doc.get("output_index", 0), doc.get("item") or {})
        if kind == "response.content_part.added":
            if (doc.get("part") or {}).get("type") in ("output_text", "refusal"):
                self._items.add(doc.get("output_index", 0))
                return blocks.open("text")
            return []
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            return [TextDelta(blocks.index, doc.get("delta", ""))] if blocks.open_kind == "text" else []
        if kind == "response.content_part.done":
            return blocks.close() if blocks.open_kind == "text" else []
        if kind == "response.function_call_arguments.delta":
            self._args_seen = True
            return [ToolArgsDelta(blocks.index, doc["delta"])] if doc.get("delta") else []
        if kind == "response.reasoning_summary_part.added" and doc.get("summary_index", 0) > 0:
            return [ThinkingDelta(blocks.index, text="\n\n")]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return [ThinkingDelta(blocks.index, text=doc.get("delta", ""))] if blocks.open_kind == "thinking" else []
        if kind == "response.output_item.done":
            return self._item_done(doc.get("output_index", 0), doc.get("item") or {})
        if kind in _TERMINAL:
            response = doc.get("response") or {}
            return blocks.finish(stop_reason(response, blocks.tool_calls > 0), usage_from(response.get("usage")))
        if kind == "response.failed":
            blocks.finished = True
            error = (doc.get("response") or {}).get("error") or {}
            return [failure_from({"code": error.get("code"), "message": error.get("message", "")})]
        if kind == "error":
            blocks.finished = True
            return [failure_from({"code": doc.get("code"), "message": doc.get("message", "")})]
        return []

    def _item_added(self, output_index: int, item: dict[str, Any]) -> list[StreamEvent]:
        kind = item.get("type")
        if kind == "function_call":
            self._items.add(output_index)
            self._args_seen = False
            out = self._blocks.open("tool_call", call_id=item.get("call_id", ""), name=call_name(item))
            if item.get("arguments"):
                self._args_seen = True
                out.append(ToolArgsDelta(self._blocks.index, item["arguments"]))
            return out
        if kind == "reasoning":
            self._items.add(output_index)
            return self._blocks.open("thinking", origin=WIRE)
        return []

    def _item_done(self, output_index: int, item: dict[str, Any]) -> list[StreamEvent]:
        if output_index not in self._items:
            return []
        self._items.discard(output_index)
        out: list[StreamEvent] = []
        blocks = self._blocks
        if item.get("type") == "function_call" and not self._args_seen and item.get("arguments"):
            out.append(ToolArgsDelta(blocks.index, item["arguments"]))
        if item.get("type") == "reasoning" and item.get("encrypted_content") and blocks.open_kind == "thinking":
            out.append(ThinkingDelta(blocks.index, signature=item["encrypted_content"]))
        return out + blocks.close()


class ResponsesStreamEncoder:
    content_type = "text/event-stream"

    def __init__(self, request: ChatRequest) -> None:
        self._seq = 0
        self._id = ""
        self._model = request.model
        self._groups = namespaces(request.tools)  # calls to a namespace's function go back under it
        self._freeform = freeform_names(request.tools)  # calls to these are custom_tool_call items
        self._output: list[dict[str, Any]] = []
        self._item: dict[str, Any] = {}  # the open item
        self._buffer = ""  # its text, arguments or summary so far
        self._signature = ""
        self._foreign: Thinking | None = None  # the open block is another vendor's reasoning
        self._shown: set[int] = set()  # canonical blocks this format shows

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, Start):
            self._id, self._model = event.id, event.model or self._model
            started = response_object(self._id, self._model, [])
            return self._ev("response.created", response=started) + self._ev("response.in_progress", response=started)
        if isinstance(event, BlockStart):
            return self._block_start(event)
        if isinstance(event, Finish):
            response = response_object(
                self._id, self._model, self._output, usage=encode_usage(event.usage), **status_fields(event.stop_reason)
            )
            name = {"completed": "response.completed", "incomplete": "response.incomplete"}.get(
                response["status"], "response.failed"
            )
            return self._ev(name, response=response)
        if isinstance(event, Failure):
            # Codex acts on OpenAI's codes; another vendor's error type would mean nothing to it
            code = event.type if event.type in _OWN_CODES else _CODES.get(event.status, "server_error")
            error = {"code": code, "message": event.message}
            failed = response_object(self._id, self._model, self._output, status="failed", error=error)
            return self._ev("response.failed", response=failed)
        if event.index not in self._shown:
            return b""
        if isinstance(event, BlockStop):
            return self._block_stop()
        where = {"item_id": self._item["id"], "output_index": len(self._output)}
        if isinstance(event, TextDelta):
            self._buffer += event.text
            return self._ev("response.output_text.delta", **where, content_index=0, delta=event.text, logprobs=[])
        if isinstance(event, ToolArgsDelta):
            self._buffer += event.json
            if self._item["type"] == "custom_tool_call":
                return b""  # the text is inside the JSON arguments: sent whole once they are complete
            return self._ev("response.function_call_arguments.delta", **where, delta=event.json)
        self._signature += event.signature
        if self._foreign is not None and self._foreign.redacted:
            self._foreign.text += event.text  # opaque data, not a summary to show
            return b""
        if not event.text:
            return b""
        head = b""
        if not self._buffer:
            part = {"type": "summary_text", "text": ""}
            head = self._ev("response.reasoning_summary_part.added", **where, summary_index=0, part=part)
        self._buffer += event.text
        return head + self._ev("response.reasoning_summary_text.delta", **where, summary_index=0, delta=event.text)

    def close(self) -> bytes:
        return b""

    def _ev(self, name: str, **fields: Any) -> bytes:
        body = {"type": name, "sequence_number": self._seq, **fields}
        self._seq += 1
        return encode(orjson.dumps(body), name)

    def _block_start(self, event: BlockStart) -> bytes:
        n = len(self._output)
        self._buffer, self._signature = "", ""
        if event.kind == "text":
            self._item = {"id": f"msg_{n}", "type": "message", "status": "in_progress", "role": "assistant"}
            self._item["content"] = []
        elif event.kind == "tool_call" and event.name in self._freeform:
            self._item = {
                "id": f"ctc_{n}",
                "type": "custom_tool_call",
                "status": "in_progress",
                "call_id": event.call_id,
            }
            self._item |= call_fields(event.name, self._groups) | {"input": ""}
        elif event.kind == "tool_call":
            self._item = {"id": f"fc_{n}", "type": "function_call", "status": "in_progress", "arguments": ""}
            self._item |= {"call_id": event.call_id, **call_fields(event.name, self._groups)}
        else:
            # Another vendor's reasoning goes out as a reasoning item too: its signed blocks sealed
            # into encrypted_content, so the next turn brings them back (see codec_support.seal).
            self._item = {"id": f"rs_{n}", "type": "reasoning", "summary": []}
            if event.origin != WIRE:
                self._foreign = Thinking("", redacted=event.redacted, origin=event.origin)
        self._shown.add(event.index)
        out = self._ev("response.output_item.added", output_index=n, item=self._item)
        if event.kind == "text":
            part = {"type": "output_text", "text": "", "annotations": []}
            out += self._ev(
                "response.content_part.added", item_id=self._item["id"], output_index=n, content_index=0, part=part
            )
        return out

    def _block_stop(self) -> bytes:
        item, text = dict(self._item), self._buffer
        where = {"item_id": item["id"], "output_index": len(self._output)}
        out = b""
        if item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            out += self._ev("response.output_text.done", **where, content_index=0, text=text)
            out += self._ev("response.content_part.done", **where, content_index=0, part=part)
            item |= {"status": "completed", "content": [part]}
        elif item["type"] == "function_call":
            out += self._ev("response.function_call_arguments.done", **where, arguments=text)
            item |= {"status": "completed", "arguments": text}
        elif item["type"] == "custom_tool_call":
            text = freeform_input(text)
            if text:
                out += self._ev("response.custom_tool_call_input.delta", **where, delta=text)
            out += self._ev("response.custom_tool_call_input.done", **where, input=text)
            item |= {"status": "completed", "input": text}
        else:
            if text:
                part = {"type": "summary_text", "text": text}
                out += self._ev("response.reasoning_summary_text.done", **where, summary_index=0, text=text)
                out += self._ev("response.reasoning_summary_part.done", **where, summary_index=0, part=part)
                item["summary"] = [part]
            foreign, self._foreign = self._foreign, None
            if foreign is not None:
                block = Thinking(
                    foreign.text if foreign.redacted else text,
                    signature=self._signature or None,
                    redacted=foreign.redacted,
                    origin=foreign.origin,
                )
                if carried([block]):
                    item["encrypted_content"] = seal([block])
            elif self._signature:
                item["encrypted_content"] = self._signature
        out += self._ev("response.output_item.done", output_index=len(self._output), item=item)
        self._output.append(item)
        return out
