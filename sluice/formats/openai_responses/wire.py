"""OpenAI Responses API wire format (`POST /v1/responses`): what Codex CLI speaks.

Streams are named SSE events (`response.created` ... `response.completed`), each with a
`sequence_number`, and no `[DONE]` sentinel; usage arrives in the terminal event's response.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from sluice.core.types import Usage, finish_reason_of
from sluice.formats.openai_common import usage_from
from sluice.formats.record import UNCHANGED, EventReader, Prepared, Seen
from sluice.formats.sse import SSEDecoder, encode, generated, parse_block

_TERMINAL = (b"event: response.completed", b"event: response.incomplete", b"event: response.failed")
_GENERATED = re.compile(rb'"delta":"((?:[^"\\]|\\.)*)"')
# The fields the counting endpoint (`POST /v1/responses/input_tokens`) accepts.
COUNT_FIELDS = frozenset(
    {"model", "input", "instructions", "tools", "tool_choice", "reasoning", "text", "parallel_tool_calls"}
)


def usage_of_response(response: object) -> Usage:
    """A Responses object's usage, served model and tier; each `web_search_call` output item is
    one billed web search (https://platform.openai.com/docs/pricing#built-in-tools). Its finish
    reason: why it is incomplete (`incomplete_details.reason`: "max_output_tokens",
    "content_filter"), else its `status` ("completed", "failed")."""
    if not isinstance(response, dict):
        return Usage()
    usage = usage_from(response.get("usage"), response)
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    usage.finish_reasons = finish_reason_of(reason) or finish_reason_of(response.get("status"))
    output = response.get("output")
    if isinstance(output, list):
        usage.web_searches = sum(
            1 for item in output if isinstance(item, dict) and item.get("type") == "web_search_call"
        )
    return usage


def error_event(status: int, message: str, code: str | None = None) -> bytes:
    """The `error` event, then the terminal `response.failed` with the same error in its response
    (https://platform.openai.com/docs/api-reference/responses-streaming/response/failed): Codex
    reads only the terminal event's `response.error.message` and ignores `error` events, so without
    it Codex shows "stream closed before response.completed" instead of the reason."""
    code = code or str(status)
    payload = {"type": "error", "code": code, "message": message, "param": None, "sequence_number": 0}
    failed = {
        "type": "response.failed",
        "sequence_number": 1,
        "response": {"object": "response", "status": "failed", "error": {"code": code, "message": message}},
    }
    return encode(orjson.dumps(payload), "error") + encode(orjson.dumps(failed), "response.failed")


def read_event(block: bytes, seen: Seen) -> bool:
    if block.startswith(b"event: response.") and b".delta" in block[:60]:
        if seen.count_output:
            seen.output_chars += generated(block, _GENERATED, seen.captured)
        return False
    if block.startswith(_TERMINAL):
        data = parse_block(block).data
        doc = orjson.loads(data)
        seen.usage.merge(usage_of_response(doc.get("response") if isinstance(doc, dict) else None))
        seen.completed = True
        if block.startswith(b"event: response.failed"):
            seen.error = data.decode("utf-8", "replace")
    elif block.startswith(b"event: error"):
        seen.error = parse_block(block).data.decode("utf-8", "replace")
    return False


def _splitter() -> Any:
    return SSEDecoder().feed_blocks


READER: EventReader[bytes] = EventReader(_splitter, read_event)


def prepare_stream(doc: dict[str, Any], stream: bool) -> Prepared:
    """Responses streams always carry usage. Cursor sends Chat's include_usage along with a
    Responses body; the Responses API refuses it."""
    options = doc.get("stream_options")
    if not isinstance(options, dict):
        return UNCHANGED
    rest = {k: v for k, v in options.items() if k != "include_usage"}
    doc.pop("stream_options")
    if rest:
        doc["stream_options"] = rest
    return Prepared(changed=True, hide_usage=False)


def count_request(doc: dict[str, Any], model: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k in COUNT_FIELDS}


def count_answer(tokens: int) -> dict[str, Any]:
    return {"object": "response.input_tokens", "input_tokens": tokens}
