"""Anthropic Messages streams <-> canonical stream events
(https://docs.anthropic.com/en/docs/build-with-claude/streaming).

Blocks the canonical stream cannot carry (server tool use and its results) are skipped with their
deltas; the text around them streams on. `ping` is not re-emitted: it carries nothing.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.core.canonical import (
    BlockStart,
    BlockStop,
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
from sluice.formats.anthropic.wire import ERROR_TYPES, error_type_for, usage_from
from sluice.formats.codec_support import BAD_EVENT, EARLY_END, IndexMap, carried, dumps, event_json, id_with
from sluice.formats.sse import SSEDecoder, encode

WIRE = WireFormat.ANTHROPIC_MESSAGES.value
STOP_REASONS = {"end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal", "pause_turn"}


def stop_reason(value: str | None) -> StopReason:
    if value in STOP_REASONS:
        return value  # type: ignore[return-value]
    return "max_tokens" if value == "model_context_window_exceeded" else "end_turn"


def wire_stop_reason(value: StopReason) -> str:
    return value if value in STOP_REASONS else "end_turn"


def encode_usage(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }


def status_for(error_type: str) -> int:
    for status, name in ERROR_TYPES.items():
        if name == error_type:
            return status
    return 500


class AnthropicStreamDecoder:
    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._blocks: dict[int, int] = {}  # wire index -> canonical index
        self._next = 0
        self._usage = Usage()
        self._stop: StopReason = "end_turn"
        self._stop_sequence: str | None = None
        self._started = False
        self._done = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(chunk):
            if self._done or not ev.data or ev.event == "ping":
                continue
            doc = event_json(ev.data)
            if doc is None:
                self._done = True
                return [*out, Failure(502, BAD_EVENT, "api_error")]
            out.extend(self._event(doc))
        return out

    def close(self) -> list[StreamEvent]:
        if self._started and not self._done:
            self._done = True
            return [Failure(502, EARLY_END, "api_error")]
        return []

    def _event(self, doc: dict[str, Any]) -> list[StreamEvent]:
        kind = doc.get("type")
        if kind == "message_start":
            message = doc.get("message") or {}
            self._started = True
            self._usage = usage_from(message.get("usage"))
            return [Start(message.get("id", ""), message.get("model", ""), usage_from(message.get("usage")))]
        if kind == "content_block_start":
            return self._block_start(doc["index"], doc.get("content_block") or {})
        if kind == "content_block_delta":
            index = self._blocks.get(doc.get("index", -1))
            return [] if index is None else _delta(index, doc.get("delta") or {})
        if kind == "content_block_stop":
            index = self._blocks.pop(doc.get("index", -1), None)
            return [] if index is None else [BlockStop(index)]
        if kind == "message_delta":
            delta = doc.get("delta") or {}
            self._stop = stop_reason(delta.get("stop_reason"))
            self._stop_sequence = delta.get("stop_sequence")
            self._usage.merge(usage_from(doc.get("usage")))
            return []
        if kind == "message_stop":
            self._done = True
            return [Finish(self._stop, self._usage, self._stop_sequence)]
        if kind == "error":
            self._done = True
            error = doc.get("error") or {}
            etype = str(error.get("type", ""))
            return [Failure(status_for(etype), str(error.get("message", "")), etype)]
        return []

    def _block_start(self, wire_index: int, block: dict[str, Any]) -> list[StreamEvent]:
        kind = block.get("type")
        index = self._next
        out: list[StreamEvent]
        if kind == "text":
            out = [BlockStart(index, "text")]
            if block.get("text"):
                out.append(TextDelta(index, block["text"]))
        elif kind == "tool_use":
            out = [BlockStart(index, "tool_call", call_id=block.get("id", ""), name=block.get("name", ""))]
            if block.get("input"):
                out.append(ToolArgsDelta(index, dumps(block["input"])))
        elif kind == "thinking":
            out = [BlockStart(index, "thinking", origin=WIRE)]
            if block.get("thinking") or block.get("signature"):
                out.append(ThinkingDelta(index, block.get("thinking", ""), block.get("signature") or ""))
        elif kind == "redacted_thinking":
            out = [
                BlockStart(index, "thinking", redacted=True, origin=WIRE),
                ThinkingDelta(index, block.get("data", "")),
            ]
        else:
            return []
        self._blocks[wire_index] = index
        self._next += 1
        return out


def _delta(index: int, delta: dict[str, Any]) -> list[StreamEvent]:
    kind = delta.get("type")
    if kind == "text_delta":
        return [TextDelta(index, delta.get("text", ""))]
    if kind == "input_json_delta":
        return [ToolArgsDelta(index, delta["partial_json"])] if delta.get("partial_json") else []
    if kind == "thinking_delta":
        return [ThinkingDelta(index, text=delta.get("thinking", ""))]
    if kind == "signature_delta":
        return [ThinkingDelta(index, signature=delta.get("signature", ""))]
    return []  # citations_delta and future kinds: nothing canonical to say


class AnthropicStreamEncoder:
    content_type = "text/event-stream"

    def __init__(self) -> None:
        self._map = IndexMap()
        self._redacted: dict[int, str] = {}  # canonical index -> opaque data, sent whole at stop
        self._foreign: dict[int, Thinking] = {}  # another vendor's reasoning blocks, open
        self._carry: list[Thinking] = []  # ... closed, for the id of the next tool call
        self._usage = Usage()

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, Start):
            self._usage = Usage(
                event.usage.input_tokens,
                event.usage.output_tokens,
                event.usage.cache_read_tokens,
                event.usage.cache_write_tokens,
            )
            message: dict[str, Any] = {
                "id": event.id,
                "type": "message",
                "role": "assistant",
                "model": event.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": encode_usage(event.usage),
            }
            return _event("message_start", {"type": "message_start", "message": message})
        if isinstance(event, BlockStart):
            return self._block_start(event)
        if isinstance(event, Finish):
            self._usage.merge(event.usage)
            delta = {"stop_reason": wire_stop_reason(event.stop_reason), "stop_sequence": event.stop_sequence}
            body = {"type": "message_delta", "delta": delta, "usage": encode_usage(self._usage)}
            return _event("message_delta", body) + _event("message_stop", {"type": "message_stop"})
        if isinstance(event, Failure):
            etype = event.type if event.type in ERROR_TYPES.values() else error_type_for(event.status)
            return _event("error", {"type": "error", "error": {"type": etype, "message": event.message}})
        if event.index in self._foreign:
            foreign = self._foreign[event.index]
            if isinstance(event, ThinkingDelta):
                foreign.text += event.text
                foreign.signature = (foreign.signature or "") + event.signature or None
            elif isinstance(event, BlockStop):
                self._carry += carried([self._foreign.pop(event.index)])
            return b""
        own = self._map.get(event.index)
        if own is None:
            return b""  # a block this format does not show
        if isinstance(event, BlockStop):
            head = b""
            if event.index in self._redacted:
                block = {"type": "redacted_thinking", "data": self._redacted.pop(event.index)}
                head = _event(
                    "content_block_start", {"type": "content_block_start", "index": own, "content_block": block}
                )
            return head + _event("content_block_stop", {"type": "content_block_stop", "index": own})
        if isinstance(event, TextDelta):
            return _delta_event(own, {"type": "text_delta", "text": event.text})
        if isinstance(event, ToolArgsDelta):
            return _delta_event(own, {"type": "input_json_delta", "partial_json": event.json})
        if event.index in self._redacted:
            self._redacted[event.index] += event.text
            return b""
        out = b""
        if event.text:
            out += _delta_event(own, {"type": "thinking_delta", "thinking": event.text})
        if event.signature:
            out += _delta_event(own, {"type": "signature_delta", "signature": event.signature})
        return out

    def close(self) -> bytes:
        return b""

    def _block_start(self, event: BlockStart) -> bytes:
        if event.kind == "thinking" and event.origin != WIRE:
            # Another vendor's reasoning is not shown; its signed blocks ride in the id of the tool
            # call that follows (see codec_support.carry_in_ids).
            self._foreign[event.index] = Thinking("", redacted=event.redacted, origin=event.origin)
            return b""
        own = self._map.add(event.index)
        block: dict[str, Any]
        if event.kind == "text":
            block = {"type": "text", "text": ""}
        elif event.kind == "tool_call":
            block = {"type": "tool_use", "id": id_with(event.call_id, self._carry), "name": event.name, "input": {}}
            self._carry = []
        elif event.redacted:
            self._redacted[event.index] = ""
            return b""
        else:
            block = {"type": "thinking", "thinking": "", "signature": ""}
        return _event("content_block_start", {"type": "content_block_start", "index": own, "content_block": block})


def _event(name: str, body: dict[str, Any]) -> bytes:
    return encode(orjson.dumps(body), name)


def _delta_event(index: int, delta: dict[str, Any]) -> bytes:
    return _event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
