"""Bedrock ConverseStream (`/model/{modelId}/converse-stream`) <-> canonical stream events.

The stream is AWS event-stream framing (`aws_eventstream`), one JSON event per frame named by
its `:event-type`: messageStart, contentBlockStart (tool calls only: text and reasoning blocks
start with their first delta), contentBlockDelta, contentBlockStop, messageStop (the stop
reason), then metadata (the usage). Errors are `exception` frames.
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
    ThinkingDelta,
    ToolArgsDelta,
)
from sluice.core.types import Usage, WireFormat
from sluice.formats.aws_eventstream import (
    CONTENT_TYPE,
    STREAM_EXCEPTIONS,
    FrameDecoder,
    event_frame,
    exception_for,
    exception_frame,
)
from sluice.formats.bedrock_converse.wire import usage_from

_ORIGIN = WireFormat.BEDROCK_CONVERSE.value
_STOPS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "guardrail_intervened": "refusal",
    "content_filtered": "refusal",
    "model_context_window_exceeded": "max_tokens",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}


def stop_reason_of(value: str) -> StopReason:
    return _STOPS.get(value, "end_turn")


class ConverseStreamDecoder:
    def __init__(self) -> None:
        self._frames = FrameDecoder()
        self._open: set[int] = set()
        self._stop: StopReason = "end_turn"
        self._finished = False

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for frame in self._frames.feed(chunk):
            payload = orjson.loads(frame.payload) if frame.payload else {}
            if frame.message_type != "event":
                status = STREAM_EXCEPTIONS.get(frame.event_type, 500)
                events.append(Failure(status, str(payload.get("message", "")), frame.event_type))
                continue
            events.extend(self._event(frame.event_type, payload))
        return events

    def _event(self, kind: str, doc: dict[str, Any]) -> list[StreamEvent]:
        index = int(doc.get("contentBlockIndex", 0))
        if kind == "messageStart":
            return [Start(id="", model="")]
        if kind == "contentBlockStart":
            use = (doc.get("start") or {}).get("toolUse")
            if use is None:
                return []
            self._open.add(index)
            return [BlockStart(index, "tool_call", call_id=use.get("toolUseId", ""), name=use.get("name", ""))]
        if kind == "contentBlockDelta":
            return self._delta(index, doc.get("delta") or {})
        if kind == "contentBlockStop":
            self._open.discard(index)
            return [BlockStop(index)]
        if kind == "messageStop":
            self._stop = stop_reason_of(str(doc.get("stopReason", "end_turn")))
            return []
        if kind == "metadata":
            self._finished = True
            return [Finish(self._stop, usage_from(doc.get("usage")))]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if "text" in delta:
            if index not in self._open:
                self._open.add(index)
                events.append(BlockStart(index, "text"))
            events.append(TextDelta(index, str(delta["text"])))
        elif "toolUse" in delta:
            events.append(ToolArgsDelta(index, str(delta["toolUse"].get("input", ""))))
        elif "reasoningContent" in delta:
            reasoning = delta["reasoningContent"]
            if index not in self._open:
                self._open.add(index)
                redacted = "redactedContent" in reasoning
                events.append(
                    BlockStart(index, "thinking", redacted=redacted, origin=WireFormat.BEDROCK_CONVERSE.value)
                )
            if "redactedContent" in reasoning:
                events.append(ThinkingDelta(index, text=str(reasoning["redactedContent"])))
            else:
                events.append(
                    ThinkingDelta(index, text=str(reasoning.get("text", "")), signature=reasoning.get("signature", ""))
                )
        return events

    def close(self) -> list[StreamEvent]:
        if self._finished:
            return []
        self._finished = True
        return [Finish(self._stop, Usage())]


class ConverseStreamEncoder:
    content_type = CONTENT_TYPE

    def __init__(self) -> None:
        self._kinds: dict[int, str] = {}
        self._thinking_origin: dict[int, str] = {}

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, Start):
            return event_frame("messageStart", {"role": "assistant"})
        if isinstance(event, BlockStart):
            self._kinds[event.index] = event.kind
            self._thinking_origin[event.index] = event.origin
            if event.kind != "tool_call":
                return b""
            start = {"toolUse": {"toolUseId": event.call_id, "name": event.name}}
            return event_frame("contentBlockStart", {"start": start, "contentBlockIndex": event.index})
        if isinstance(event, TextDelta):
            return _delta(event.index, {"text": event.text})
        if isinstance(event, ToolArgsDelta):
            return _delta(event.index, {"toolUse": {"input": event.json}})
        if isinstance(event, ThinkingDelta):
            if self._thinking_origin.get(event.index) != _ORIGIN and event.signature:
                return b""  # another vendor's signature is not valid here
            part = {"signature": event.signature} if event.signature else {"text": event.text}
            return _delta(event.index, {"reasoningContent": part})
        if isinstance(event, BlockStop):
            return event_frame("contentBlockStop", {"contentBlockIndex": event.index})
        if isinstance(event, Finish):
            stop = {"refusal": "content_filtered", "pause_turn": "end_turn", "error": "end_turn"}.get(
                event.stop_reason, event.stop_reason
            )
            u = event.usage
            usage = {"inputTokens": u.input_tokens, "outputTokens": u.output_tokens, "totalTokens": u.total}
            if u.cache_read_tokens:  # TokenUsage in botocore's bedrock-runtime model, as in a whole answer
                usage["cacheReadInputTokens"] = u.cache_read_tokens
            if u.cache_write_tokens:
                usage["cacheWriteInputTokens"] = u.cache_write_tokens
            return event_frame("messageStop", {"stopReason": stop}) + event_frame(
                "metadata", {"usage": usage, "metrics": {"latencyMs": 0}}
            )
        return exception_frame(exception_for(event.status), event.message)

    def close(self) -> bytes:
        return b""


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return event_frame("contentBlockDelta", {"delta": delta, "contentBlockIndex": index})
