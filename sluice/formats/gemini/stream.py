"""Gemini streams (`:streamGenerateContent?alt=sse`) <-> canonical stream events
(https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent).

Each SSE event is a whole GenerateContentResponse holding the next parts. A function call arrives
whole (arguments as an object), so it is one block with one arguments delta; going out, the
arguments are gathered and sent in one part. A thought signature on a non-thought part (how
Gemini signs a function call) is its own thinking block just before that part; going out, such a
signature-only block is attached to the next part again, which is where Gemini 3 requires it.
"""

from __future__ import annotations

import hashlib
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
    ToolCall,
)
from sluice.core.types import Usage, WireFormat
from sluice.formats.codec_support import JsonEventDecoder, args_object, carried, dumps, seal
from sluice.formats.gemini.wire import STATUS_NAMES, error_payload, usage_from
from sluice.formats.sse import encode

WIRE = WireFormat.GEMINI.value
_REFUSALS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "LANGUAGE"}
_ERRORS = {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "OTHER", "TOO_MANY_TOOL_CALLS"}
_FINISH_OUT = {"max_tokens": "MAX_TOKENS", "refusal": "SAFETY", "error": "OTHER"}


def stop_reason(finish: str | None, tool_calls: bool) -> StopReason:
    if finish == "MAX_TOKENS":
        return "max_tokens"
    if finish in _REFUSALS:
        return "refusal"
    if finish in _ERRORS:
        return "error"
    return "tool_use" if tool_calls else "end_turn"


def finish_reason(stop: StopReason) -> str:
    return _FINISH_OUT.get(stop, "STOP")


def call_id(response_id: str, n: int, name: str, args_json: str) -> str:
    """Gemini's calls usually carry no id: derive a stable one from the answer, so the same
    answer decoded twice (whole or streamed) names its calls the same way."""
    digest = hashlib.sha256(f"{response_id}/{n}/{name}/{args_json}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def encode_usage(u: Usage) -> dict[str, int]:
    """promptTokenCount counts every prompt token, cached or written to the cache alike."""
    prompt = u.input_tokens + u.cache_read_tokens + u.cache_write_tokens
    out = {"promptTokenCount": prompt, "candidatesTokenCount": u.output_tokens}
    if u.cache_read_tokens:
        out["cachedContentTokenCount"] = u.cache_read_tokens
    out["totalTokenCount"] = prompt + u.output_tokens
    return out


def status_for(error: dict[str, Any]) -> int:
    if isinstance(error.get("code"), int):
        return int(error["code"])
    for status, name in STATUS_NAMES.items():
        if name == error.get("status"):
            return status
    return 500


def call_part(call: ToolCall) -> dict[str, Any]:
    return {"functionCall": {"id": call.id, "name": call.name, "args": args_object(call, WIRE)}}


class GeminiStreamDecoder(JsonEventDecoder):
    error_type = "UNAVAILABLE"

    def __init__(self) -> None:
        super().__init__()
        self._id = ""
        self._usage = Usage()

    def _event(self, doc: dict[str, Any]) -> list[StreamEvent]:
        if isinstance(doc.get("error"), dict):
            self._blocks.finished = True
            error = doc["error"]
            return [Failure(status_for(error), str(error.get("message", "")), str(error.get("status", "")))]
        out: list[StreamEvent] = []
        if doc.get("usageMetadata"):
            self._usage = usage_from(doc["usageMetadata"])  # cumulative: the latest is the whole
        if not self._blocks.started:
            self._blocks.started = True
            self._id = doc.get("responseId", "")
            u = self._usage
            out.append(Start(self._id, doc.get("modelVersion", ""), Usage(u.input_tokens, 0, u.cache_read_tokens)))
        candidate = (doc.get("candidates") or [{}])[0]
        for part in (candidate.get("content") or {}).get("parts") or ():
            out.extend(self._part(part))
        if candidate.get("finishReason"):
            stop = stop_reason(candidate["finishReason"], self._blocks.tool_calls > 0)
            out.extend(self._blocks.finish(stop, self._usage))
        elif (doc.get("promptFeedback") or {}).get("blockReason"):
            out.extend(self._blocks.finish("refusal", self._usage))
        return out

    def _part(self, part: dict[str, Any]) -> list[StreamEvent]:
        blocks = self._blocks
        signature = part.get("thoughtSignature") or ""
        if part.get("thought"):
            out = blocks.ensure("thinking", origin=WIRE)
            if part.get("text") or signature:
                out.append(ThinkingDelta(blocks.index, part.get("text", ""), signature))
            return out
        out = []
        if signature:
            out += blocks.open("thinking", origin=WIRE)
            out += [ThinkingDelta(blocks.index, signature=signature), *blocks.close()]
        if part.get("text"):
            out += blocks.ensure("text")
            out.append(TextDelta(blocks.index, part["text"]))
        elif "functionCall" in part:
            call = part["functionCall"]
            args = dumps(call.get("args") or {})
            cid = call.get("id") or call_id(self._id, blocks.tool_calls, call.get("name", ""), args)
            out += blocks.open("tool_call", call_id=cid, name=call.get("name", ""))
            out += [ToolArgsDelta(blocks.index, args), *blocks.close()]
        return out


class GeminiStreamEncoder:
    content_type = "text/event-stream"

    def __init__(self, request: ChatRequest) -> None:
        self._id = ""
        self._model = request.model
        self._prompt = Usage()
        self._kinds: dict[int, str] = {}  # canonical index -> kind, for the blocks this format shows
        self._call: ToolCall | None = None
        self._thought_text = False
        self._signature = ""  # waiting for the next part
        self._foreign: dict[int, Thinking] = {}  # another vendor's reasoning blocks, open
        self._carry: list[Thinking] = []  # ... closed, to seal into the next part's signature

    def encode(self, event: StreamEvent) -> bytes:
        if isinstance(event, Start):
            self._id, self._model, self._prompt = event.id, event.model or self._model, event.usage
            return b""
        if isinstance(event, BlockStart):
            if event.kind == "thinking" and event.origin != WIRE:
                # Another vendor's reasoning is not shown, but its signed blocks ride on the next
                # part's thoughtSignature, which Gemini CLI sends back (see codec_support.seal).
                self._foreign[event.index] = Thinking("", redacted=event.redacted, origin=event.origin)
                return b""
            self._kinds[event.index] = event.kind
            if event.kind == "tool_call":
                self._call = ToolCall(event.call_id, event.name, "")
            self._thought_text = False
            return b""
        if isinstance(event, Finish):
            part = self._signed({"text": ""})
            candidate = {
                "content": {"role": "model", "parts": [part]},
                "finishReason": finish_reason(event.stop_reason),
            }
            return self._chunk(candidate, encode_usage(event.usage))
        if isinstance(event, Failure):
            return encode(orjson.dumps(error_payload(event.status, event.message)))
        if event.index in self._foreign:
            block = self._foreign[event.index]
            if isinstance(event, ThinkingDelta):
                block.text += event.text
                block.signature = (block.signature or "") + event.signature or None
            elif isinstance(event, BlockStop):
                del self._foreign[event.index]
                self._carry += carried([block])
            return b""
        kind = self._kinds.get(event.index)
        if kind is None:
            return b""
        if isinstance(event, TextDelta):
            return self._parts([self._signed({"text": event.text})])
        if isinstance(event, ToolArgsDelta) and self._call:
            self._call.arguments_json += event.json
            return b""
        if isinstance(event, ThinkingDelta):
            out = b""
            if event.text:
                self._thought_text = True
                out += self._parts([{"text": event.text, "thought": True}])
            if event.signature and self._thought_text:
                out += self._parts([{"text": "", "thought": True, "thoughtSignature": event.signature}])
            elif event.signature:
                self._signature += event.signature
            return out
        if isinstance(event, BlockStop) and kind == "tool_call" and self._call:
            call, self._call = self._call, None
            return self._parts([self._signed(call_part(call), call=True)])
        return b""

    def close(self) -> bytes:
        return b""

    def _signed(self, part: dict[str, Any], call: bool = False) -> dict[str, Any]:
        # Carried blocks go on the function call (whose signature Gemini CLI surely sends back),
        # or on the final part of an answer without one.
        if self._carry and (call or ("functionCall" not in part and part.get("text") == "")):
            part["thoughtSignature"], self._carry, self._signature = seal(self._carry), [], ""
        elif self._signature:
            part["thoughtSignature"], self._signature = self._signature, ""
        return part

    def _parts(self, parts: list[dict[str, Any]]) -> bytes:
        u = self._prompt
        prompt = {"promptTokenCount": u.input_tokens + u.cache_read_tokens + u.cache_write_tokens}
        return self._chunk({"content": {"role": "model", "parts": parts}}, prompt)

    def _chunk(self, candidate: dict[str, Any], usage: dict[str, int]) -> bytes:
        doc = {
            "candidates": [{**candidate, "index": 0}],
            "usageMetadata": usage,
            "modelVersion": self._model,
            "responseId": self._id,
        }
        return encode(orjson.dumps(doc))
