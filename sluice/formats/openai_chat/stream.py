"""OpenAI Chat Completions streams <-> canonical stream events
(https://platform.openai.com/docs/api-reference/chat-streaming).

A chunk stream has no block boundaries: a block opens when its first delta arrives and closes when
another kind (or another tool call) starts. Tool calls are assumed to stream one after another,
as OpenAI sends them. Finish waits for the usage-only chunk (or `[DONE]`), which follows the
chunk carrying `finish_reason`.
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
from sluice.formats.codec_support import BAD_EVENT, EARLY_END, BlockTracker, carried, event_json, id_with
from sluice.formats.openai_chat.wire import DONE
from sluice.formats.openai_common import error_payload, failure_from, usage_from
from sluice.formats.sse import SSEDecoder, encode

WIRE = WireFormat.OPENAI_CHAT.value
_FINISH_IN = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
_FINISH_OUT = {"max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"}


def stop_reason(finish: str | None, tool_calls: bool) -> StopReason:
    if finish == "content_filter":
        return "refusal"
    stop: StopReason = _FINISH_IN.get(finish or "stop", "end_turn")  # type: ignore[assignment]
    # Some compatible vendors say "stop" after tool calls; the calls are what the caller acts on.
    return "tool_use" if tool_calls and stop == "end_turn" else stop


def finish_reason(stop: StopReason) -> str:
    return _FINISH_OUT.get(stop, "stop")


def encode_usage(u: Usage) -> dict[str, Any]:
    """prompt_tokens counts every prompt token, cached or written to the cache alike."""
    prompt = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
    }


class OpenAIChatStreamDecoder:
    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._blocks = BlockTracker()
        self._tool_index: int | None = None  # the wire index of the open tool call
        self._finish: str | None = None
        self._usage = Usage()

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(chunk):
            if self._blocks.finished or not ev.data:
                continue
            if ev.data == b"[DONE]":
                out.extend(self._finish_events())
            elif (doc := event_json(ev.data)) is None:
                self._blocks.finished = True
                return [*out, Failure(502, BAD_EVENT, "server_error")]
            else:
                out.extend(self._chunk(doc))
        return out

    def close(self) -> list[StreamEvent]:
        if self._blocks.finished:
            return []
        if self._finish is not None:
            return self._finish_events()
        if self._blocks.started:
            self._blocks.finished = True
            return [Failure(502, EARLY_END, "server_error")]
        return []

    def _finish_events(self) -> list[StreamEvent]:
        return self._blocks.finish(stop_reason(self._finish, self._blocks.tool_calls > 0), self._usage)

    def _chunk(self, doc: dict[str, Any]) -> list[StreamEvent]:
        if isinstance(doc.get("error"), dict):
            self._blocks.finished = True
            return [failure_from(doc["error"])]
        out: list[StreamEvent] = []
        if not self._blocks.started:
            if not doc.get("id") and not doc.get("choices"):
                return []  # Azure's prompt-filter chunk comes first, with no id or model
            self._blocks.started = True
            out.append(Start(doc.get("id", ""), doc.get("model", "")))
        if doc.get("usage"):
            self._usage = usage_from(doc["usage"])
        for choice in doc.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # n > 1 has no canonical form; the first choice is the answer
            out.extend(self._delta(choice.get("delta") or {}))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
                out.extend(self._blocks.close())
        return out

    def _delta(self, delta: dict[str, Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        blocks = self._blocks
        if delta.get("reasoning_content"):
            out += blocks.ensure("thinking", origin=WIRE)
            out.append(ThinkingDelta(blocks.index, text=delta["reasoning_content"]))
        for key in ("content", "refusal"):
            if delta.get(key):
                self._tool_index = None
                out += blocks.ensure("text")
                out.append(TextDelta(blocks.index, delta[key]))
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            if call.get("index", 0) != self._tool_index or blocks.open_kind != "tool_call":
                self._tool_index = call.get("index", 0)
                out += blocks.open("tool_call", call_id=call.get("id") or "", name=function.get("name") or "")
            if function.get("arguments"):
                out.append(ToolArgsDelta(blocks.index, function["arguments"]))
        return out


class OpenAIChatStreamEncoder:
    content_type = "text/event-stream"

    def __init__(self, request: ChatRequest) -> None:
        options = request.extra.get(WIRE, {}).get("stream_options") or {}
        self._include_usage = options.get("include_usage", True)
        self._id = ""
        self._model = request.model
        self._tools: dict[int, int] = {}  # canonical index -> tool call index
        self._thinking: set[int] = set()
        self._foreign: dict[int, Thinking] = {}  # another vendor's reasoning blocks, open
        self._carry: list[Thinking] = []  # ... closed, for the id of the next tool call
        self._finished = False
        self._role_sent = True

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, Start):
            self._id, self._model = event.id, event.model or self._model
            self._role_sent = False  # the role rides on the first delta, as OpenAI sends it
            return b""
        if isinstance(event, BlockStart):
            if event.kind == "tool_call":
                n = self._tools[event.index] = len(self._tools)
                call = {"index": n, "id": id_with(event.call_id, self._carry), "type": "function"}
                self._carry = []
                call["function"] = {"name": event.name, "arguments": ""}
                return self._chunk({"tool_calls": [call]})
            if event.kind == "thinking" and event.origin == WIRE:
                self._thinking.add(event.index)
            elif event.kind == "thinking":
                self._foreign[event.index] = Thinking("", redacted=event.redacted, origin=event.origin)
            return b""
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text})
        if isinstance(event, ToolArgsDelta):
            return self._chunk(
                {"tool_calls": [{"index": self._tools[event.index], "function": {"arguments": event.json}}]}
            )
        if isinstance(event, ThinkingDelta) and event.index in self._foreign:
            foreign = self._foreign[event.index]
            foreign.text += event.text
            foreign.signature = (foreign.signature or "") + event.signature or None
            return b""
        if isinstance(event, BlockStop) and event.index in self._foreign:
            self._carry += carried([self._foreign.pop(event.index)])
            return b""
        if isinstance(event, ThinkingDelta):
            if event.index in self._thinking and event.text:
                return self._chunk({"reasoning_content": event.text})
            return b""
        if isinstance(event, Finish):
            self._finished = True
            out = self._chunk({}, finish_reason(event.stop_reason))
            if self._include_usage:
                doc = self._base()
                doc["choices"] = []
                doc["usage"] = encode_usage(event.usage)
                out += encode(orjson.dumps(doc))
            return out
        if isinstance(event, Failure):
            return encode(orjson.dumps(error_payload(event.status, event.message)))
        return b""  # BlockStop: chunks have no block boundaries

    def close(self) -> bytes:
        return DONE if self._finished else b""

    def _base(self) -> dict[str, Any]:
        # `created` would need a clock, which codecs do not have; 0 parses everywhere.
        return {"id": self._id, "object": "chat.completion.chunk", "created": 0, "model": self._model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", "content": None, **delta}
        doc = self._base()
        doc["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        return encode(orjson.dumps(doc))
