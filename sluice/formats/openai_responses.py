"""OpenAI Responses API wire format (`POST /v1/responses`): what Codex CLI speaks.

Streams are named SSE events (`response.created` ... `response.completed`), each with a
`sequence_number`, and no `[DONE]` sentinel; usage arrives in the terminal event's response.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from sluice.core.types import Completion, Usage
from sluice.formats.openai_chat import usage_from
from sluice.formats.sse import SSEDecoder, encode, generated_chars, generated_pieces, parse_block

_TERMINAL = (b"event: response.completed", b"event: response.incomplete", b"event: response.failed")
_GENERATED = re.compile(rb'"delta":"((?:[^"\\]|\\.)*)"')


def usage_of_response(response: object) -> Usage:
    """A Responses object's usage, served model and tier; each `web_search_call` output item is
    one billed web search (https://platform.openai.com/docs/pricing#built-in-tools)."""
    if not isinstance(response, dict):
        return Usage()
    usage = usage_from(response.get("usage"), response)
    output = response.get("output")
    if isinstance(output, list):
        usage.web_searches = sum(
            1 for item in output if isinstance(item, dict) and item.get("type") == "web_search_call"
        )
    return usage


def usage_from_response(body: bytes) -> Usage:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Usage()
    return usage_of_response(doc)


def error_event(status: int, message: str, code: str | None = None) -> bytes:
    payload = {"type": "error", "code": code or str(status), "message": message, "param": None, "sequence_number": 0}
    return encode(orjson.dumps(payload), "error")


class StreamObserver:
    """Collects usage from a Responses stream; bytes pass unchanged."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.usage = Usage()
        self.error: str | None = None
        self.completed = False
        self.count_output = False
        self.output_chars = 0
        self.captured: list[str] | None = None

    def feed(self, chunk: bytes) -> bytes:
        for block in self._decoder.feed_blocks(chunk):
            if block.startswith(b"event: response.") and b".delta" in block[:60]:
                if self.count_output:
                    self.output_chars += generated_chars(block, _GENERATED)
                    if self.captured is not None:
                        self.captured.extend(generated_pieces(block, _GENERATED))
                continue
            if block.startswith(_TERMINAL):
                doc = orjson.loads(parse_block(block).data)
                self.usage.merge(usage_of_response(doc.get("response")))
                self.completed = True
                if block.startswith(b"event: response.failed"):
                    self.error = parse_block(block).data.decode("utf-8", "replace")
            elif block.startswith(b"event: error"):
                self.error = parse_block(block).data.decode("utf-8", "replace")
        return chunk


def render_response(c: Completion, *, status: str = "completed") -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if c.text:
        output.append(
            {
                "type": "message",
                "id": "msg_" + c.id[-24:],
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": c.text, "annotations": []}],
            }
        )
    for call in c.tool_calls:
        output.append(
            {
                "type": "function_call",
                "id": "fc_" + call.id[-24:],
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments_json,
                "status": "completed",
            }
        )
    u = c.usage
    return {
        "id": c.id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": c.model,
        "output": output,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": {
            "input_tokens": u.input_tokens + u.cache_read_tokens,
            "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
            "output_tokens": u.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.input_tokens + u.cache_read_tokens + u.output_tokens,
        },
    }


def render_stream(c: Completion, *, pieces: int = 4) -> list[bytes]:
    done = render_response(c)
    started = {**done, "status": "in_progress", "output": [], "usage": None}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": started}),
        ("response.in_progress", {"response": started}),
    ]
    for index, item in enumerate(done["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append(
                (
                    "response.output_item.added",
                    {"output_index": index, "item": {**item, "status": "in_progress", "content": []}},
                )
            )
            part = {"type": "output_text", "text": "", "annotations": []}
            events.append(
                (
                    "response.content_part.added",
                    {"item_id": item["id"], "output_index": index, "content_index": 0, "part": part},
                )
            )
            size = max(1, -(-len(text) // pieces))
            for i in range(0, len(text), size):
                events.append(
                    (
                        "response.output_text.delta",
                        {"item_id": item["id"], "output_index": index, "content_index": 0, "delta": text[i : i + size]},
                    )
                )
            events.append(
                (
                    "response.output_text.done",
                    {"item_id": item["id"], "output_index": index, "content_index": 0, "text": text},
                )
            )
            events.append(
                (
                    "response.content_part.done",
                    {"item_id": item["id"], "output_index": index, "content_index": 0, "part": {**part, "text": text}},
                )
            )
        else:
            events.append(
                (
                    "response.output_item.added",
                    {"output_index": index, "item": {**item, "status": "in_progress", "arguments": ""}},
                )
            )
            events.append(
                (
                    "response.function_call_arguments.delta",
                    {"item_id": item["id"], "output_index": index, "delta": item["arguments"]},
                )
            )
            events.append(
                (
                    "response.function_call_arguments.done",
                    {"item_id": item["id"], "output_index": index, "arguments": item["arguments"]},
                )
            )
        events.append(("response.output_item.done", {"output_index": index, "item": item}))
    events.append(("response.completed", {"response": done}))
    return [
        encode(orjson.dumps({"type": name, "sequence_number": n, **fields}), name)
        for n, (name, fields) in enumerate(events)
    ]
