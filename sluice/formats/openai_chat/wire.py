"""OpenAI Chat Completions wire format (https://platform.openai.com/docs/api-reference/chat):
its in-stream error, what its stream events mean for metering, and the request changes a streamed
body needs to be metered. Errors and usage are the OpenAI formats' own (`openai_common`)."""

from __future__ import annotations

import re
from typing import Any

import orjson

from sluice.core.types import WireFormat
from sluice.formats.openai_common import choice_finish_reasons, error_payload, usage_from
from sluice.formats.record import UNCHANGED, EventReader, Prepared, Seen
from sluice.formats.sse import SSEDecoder, encode, generated, parse_block

DONE = b"data: [DONE]\n\n"
_GENERATED = re.compile(rb'"(?:content|arguments|reasoning_content)":"((?:[^"\\]|\\.)*)"')


def error_event(status: int, message: str, code: str | None = None) -> bytes:
    """A Chat stream that fails ends with the error chunk and the [DONE] every client waits for."""
    return encode(orjson.dumps(error_payload(status, message, code))) + DONE


def read_event(block: bytes, seen: Seen) -> bool:
    """Returns True for the usage-only chunk (which `hide_usage` takes out again)."""
    if block.endswith(b"[DONE]"):
        seen.completed = True
        return False
    if seen.count_output and b'"delta"' in block:
        seen.output_chars += generated(block, _GENERATED, seen.captured)
    if b'"usage":{' not in block and b'"usage": {' not in block and b'"error"' not in block and not _finishes(block):
        return False  # most chunks: "usage":null or none at all, "finish_reason":null
    data = parse_block(block).data
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(doc, dict):
        return False
    if "error" in doc:
        seen.error = data.decode("utf-8", "replace")
        return False
    reasons = choice_finish_reasons(doc)
    if reasons:  # one chunk per choice that ends (n > 1: several)
        seen.usage.finish_reasons += reasons
    usage = doc.get("usage")
    if usage:
        seen.usage.merge(usage_from(usage, doc))
        return not doc.get("choices")
    return False


def _finishes(block: bytes) -> bool:
    """Whether a chunk says why a choice ended (every other chunk has `"finish_reason":null`)."""
    at = block.find(b'"finish_reason":')
    return at >= 0 and not block[at + 16 : at + 22].lstrip().startswith(b"null")


def _splitter() -> Any:
    return SSEDecoder().feed_blocks


READER: EventReader[bytes] = EventReader(_splitter, read_event)


def prepare_stream(doc: dict[str, Any], stream: bool) -> Prepared:
    """Chat streams carry usage only when asked (`stream_options.include_usage`): ask, so the stream
    can be metered; the caller who had not asked must not see the extra chunk (`hide_usage`)."""
    if not stream:
        return UNCHANGED
    opts = doc.get("stream_options")
    opts = opts if isinstance(opts, dict) else {}
    if opts.get("include_usage"):
        return UNCHANGED
    doc["stream_options"] = {**opts, "include_usage": True}
    return Prepared(changed=True, hide_usage=True)


def body_wire(doc: dict[str, Any]) -> WireFormat | None:
    """Cursor's agent mode posts Responses-shaped bodies (`input`, flat tools) to
    /v1/chat/completions and reads Chat Completions back."""
    return WireFormat.OPENAI_RESPONSES if "messages" not in doc and "input" in doc else None
