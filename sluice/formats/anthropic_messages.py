"""Anthropic Messages API wire format (https://docs.anthropic.com/en/api/messages)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from sluice.core.types import Completion, Usage, count_of
from sluice.formats.sse import SSEDecoder, encode, generated_chars, generated_pieces, parse_block

# HTTP status -> Anthropic error type (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STOP_REASONS = {"end_turn", "max_tokens", "tool_use", "stop_sequence", "pause_turn", "refusal"}


def error_type_for(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, request_id: str | None = None) -> bytes:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type_for(status), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def error_event(status: int, message: str) -> bytes:
    payload = {"type": "error", "error": {"type": error_type_for(status), "message": message}}
    return encode(orjson.dumps(payload), "error")


def usage_from(raw: dict[str, Any] | None, model: object = None) -> Usage:
    """The Messages usage object (https://docs.anthropic.com/en/api/messages#response-usage):
    1-hour cache writes under `cache_creation`, server-side web searches under `server_tool_use`."""
    if not isinstance(raw, dict):
        return Usage(served_model=model if isinstance(model, str) else "")
    creation = raw.get("cache_creation")
    tools = raw.get("server_tool_use")
    tier = raw.get("service_tier")
    return Usage(
        input_tokens=count_of(raw.get("input_tokens")),
        output_tokens=count_of(raw.get("output_tokens")),
        cache_read_tokens=count_of(raw.get("cache_read_input_tokens")),
        cache_write_tokens=count_of(raw.get("cache_creation_input_tokens")),
        cache_write_1h_tokens=count_of(creation.get("ephemeral_1h_input_tokens")) if isinstance(creation, dict) else 0,
        web_searches=count_of(tools.get("web_search_requests")) if isinstance(tools, dict) else 0,
        served_model=model if isinstance(model, str) else "",
        service_tier=tier if isinstance(tier, str) else "",
        reported=True,
    )


def usage_from_response(body: bytes) -> Usage:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Usage()
    return usage_from(doc.get("usage"), doc.get("model")) if isinstance(doc, dict) else Usage()


_GENERATED = re.compile(rb'"(?:text|partial_json|thinking)":"((?:[^"\\]|\\.)*)"')
_SKIPPED = (b"event: content_block_delta", b"event: ping", b"event: content_block_st")


class StreamObserver:
    """Watches a Messages stream pass by and collects its usage; never changes the bytes."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.usage = Usage()
        self.error: str | None = None
        self.completed = False
        self.count_output = False  # measure generated text as it streams (for budget checks)
        self.output_chars = 0
        self.captured: list[str] | None = None  # keep the generated text too (audit content capture)

    def feed(self, chunk: bytes) -> bytes:
        for block in self._decoder.feed_blocks(chunk):
            if block.startswith(_SKIPPED):
                if self.count_output and block.startswith(b"event: content_block_delta"):
                    self.output_chars += generated_chars(block, _GENERATED)
                    if self.captured is not None:
                        self.captured.extend(generated_pieces(block, _GENERATED))
                continue  # text and tool deltas carry no usage: not worth parsing
            ev = parse_block(block)
            if ev.event == "message_start":
                msg = orjson.loads(ev.data).get("message") or {}
                self.usage.merge(usage_from(msg.get("usage"), msg.get("model")))
            elif ev.event == "message_delta":
                self.usage.merge(usage_from(orjson.loads(ev.data).get("usage")))
            elif ev.event == "message_stop":
                self.completed = True
            elif ev.event == "error":
                self.error = ev.data.decode("utf-8", "replace")
        return chunk


def render_message(c: Completion) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if c.text:
        content.append({"type": "text", "text": c.text})
    for call in c.tool_calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": orjson.loads(call.arguments_json)}
        )
    return {
        "id": c.id,
        "type": "message",
        "role": "assistant",
        "model": c.model,
        "content": content,
        "stop_reason": c.stop_reason if c.stop_reason in _STOP_REASONS else "end_turn",
        "stop_sequence": None,
        "usage": _render_usage(c.usage),
    }


def _render_usage(u: Usage) -> dict[str, int]:
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }


def render_stream(c: Completion, *, pieces: int = 4) -> list[bytes]:
    """The event sequence of a streamed message: message_start, content blocks, message_delta,
    message_stop, split into `pieces` text deltas."""
    start_usage = _render_usage(Usage(c.usage.input_tokens, 1, c.usage.cache_read_tokens, c.usage.cache_write_tokens))
    message = {**render_message(c), "content": [], "stop_reason": None, "usage": start_usage}
    out = [
        encode(orjson.dumps({"type": "message_start", "message": message}), "message_start"),
    ]
    index = 0
    if c.text:
        out.append(_block_start(index, {"type": "text", "text": ""}))
        out.append(encode(b'{"type": "ping"}', "ping"))
        for part in _split(c.text, pieces):
            delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": part}}
            out.append(encode(orjson.dumps(delta), "content_block_delta"))
        out.append(_block_stop(index))
        index += 1
    for call in c.tool_calls:
        out.append(_block_start(index, {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}))
        for part in _split(call.arguments_json, 2):
            delta = {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": part},
            }
            out.append(encode(orjson.dumps(delta), "content_block_delta"))
        out.append(_block_stop(index))
        index += 1
    final = {
        "type": "message_delta",
        "delta": {"stop_reason": render_message(c)["stop_reason"], "stop_sequence": None},
        "usage": {"output_tokens": c.usage.output_tokens},
    }
    out.append(encode(orjson.dumps(final), "message_delta"))
    out.append(encode(b'{"type":"message_stop"}', "message_stop"))
    return out


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    ev = {"type": "content_block_start", "index": index, "content_block": block}
    return encode(orjson.dumps(ev), "content_block_start")


def _block_stop(index: int) -> bytes:
    return encode(orjson.dumps({"type": "content_block_stop", "index": index}), "content_block_stop")


def _split(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]
