"""Bedrock Converse (`/model/{modelId}/converse`, `/converse-stream`): its usage object, what its
event-stream frames mean for metering, and its errors. No surface of the gateway speaks Converse
(callers reach Converse models through the translation bridge), so its error body and event only
serve a provider's own error shape."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.core.types import Usage, count_of, finish_reason_of
from sluice.formats.aws_eventstream import Frame, FrameDecoder, exception_for, exception_frame
from sluice.formats.record import EventReader, Seen


def usage_from(raw: dict[str, Any] | None) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    return Usage(
        input_tokens=count_of(raw.get("inputTokens")),
        output_tokens=count_of(raw.get("outputTokens")),
        cache_read_tokens=count_of(raw.get("cacheReadInputTokens")),
        cache_write_tokens=count_of(raw.get("cacheWriteInputTokens")),
        reported=True,
    )


def usage_of_answer(doc: dict[str, Any]) -> Usage:
    usage = usage_from(doc.get("usage"))
    usage.finish_reasons = finish_reason_of(doc.get("stopReason"))
    return usage


def error_body(status: int, message: str, code: str | None = None, request_id: str = "") -> bytes:
    """AWS's JSON error shape: the exception's name in `__type`, the text in `message`."""
    return orjson.dumps({"__type": exception_for(status), "message": message})


def error_event(status: int, message: str, code: str | None = None) -> bytes:
    return exception_frame(exception_for(status), message)


def read_frame(frame: Frame, seen: Seen) -> bool:
    """The stop reason arrives in `messageStop`, usage in the final `metadata` event; errors are
    exception frames."""
    if frame.message_type != "event":
        seen.error = frame.payload.decode("utf-8", "replace") or frame.event_type
    elif frame.event_type == "metadata":
        doc = orjson.loads(frame.payload)
        reasons = seen.usage.finish_reasons
        seen.usage = usage_from(doc.get("usage") if isinstance(doc, dict) else None)
        seen.usage.finish_reasons = reasons
        seen.completed = True
    elif frame.event_type == "messageStop":
        doc = orjson.loads(frame.payload)
        seen.usage.finish_reasons = finish_reason_of(doc.get("stopReason") if isinstance(doc, dict) else None)
    elif frame.event_type == "contentBlockDelta" and seen.count_output:
        doc = orjson.loads(frame.payload)
        delta = doc.get("delta") if isinstance(doc, dict) else None
        text = _generated(delta) if isinstance(delta, dict) else ""
        seen.output_chars += len(text)
        if seen.captured is not None and text:
            seen.captured.append(text)
    return False


def _generated(delta: dict[str, Any]) -> str:
    if "text" in delta:
        return str(delta["text"])
    if "toolUse" in delta:
        return str((delta["toolUse"] or {}).get("input", ""))
    return str((delta.get("reasoningContent") or {}).get("text", ""))


def _splitter() -> Any:
    return FrameDecoder().feed


READER: EventReader[Frame] = EventReader(_splitter, read_frame, sse=False)
