"""Bedrock InvokeModel streams of Anthropic models <-> the Anthropic SSE stream they carry.

InvokeModel streams carry each Anthropic event, base64-encoded, in a `chunk` event's
`{"bytes": ...}` (AWS event-stream framing, `aws_eventstream`); an error mid-stream is an
`exception` frame.
"""

from __future__ import annotations

import base64

import orjson

from sluice.formats.anthropic.wire import error_event
from sluice.formats.aws_eventstream import (
    STREAM_EXCEPTIONS,
    Frame,
    FrameDecoder,
    chunk_frame,
    exception_for,
    exception_frame,
)
from sluice.formats.sse import SSEDecoder, encode


class InvokeStreamToSSE:
    """Bedrock InvokeModel stream of an Anthropic model -> the Anthropic SSE stream it carries, so
    the engine meters it as it meters the Anthropic API. Exceptions become Anthropic `error` events."""

    def __init__(self) -> None:
        self._frames = FrameDecoder()

    def feed(self, chunk: bytes) -> bytes:
        out = []
        for frame in self._frames.feed(chunk):
            if frame.message_type == "exception" or frame.message_type == "error":
                out.append(_error_event(frame))
                continue
            if frame.event_type != "chunk":
                continue
            data = base64.b64decode(orjson.loads(frame.payload)["bytes"])
            kind = orjson.loads(data).get("type", "message")
            out.append(encode(data, str(kind)))
        return b"".join(out)


def _error_event(frame: Frame) -> bytes:
    try:
        message = str(orjson.loads(frame.payload).get("message", ""))
    except (orjson.JSONDecodeError, AttributeError):
        message = frame.payload.decode("utf-8", "replace")
    status = STREAM_EXCEPTIONS.get(frame.event_type, 500)
    return error_event(status, f"Bedrock {frame.event_type}: {message}")


class SSEToInvokeStream:
    """An Anthropic SSE stream -> Bedrock InvokeModel stream frames (the Bedrock surface's answer).
    An Anthropic `error` event becomes the exception frame Bedrock would send instead."""

    def __init__(self) -> None:
        self._sse = SSEDecoder()

    def feed(self, chunk: bytes) -> bytes:
        out = []
        for event in self._sse.feed(chunk):
            if not event.data or event.event == "ping":
                continue
            if event.event == "error":
                out.append(error_frame_of(event.data))
            else:
                out.append(chunk_frame(event.data))
        return b"".join(out)


def error_frame_of(data: bytes) -> bytes:
    try:
        error = orjson.loads(data).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    status = {"rate_limit_error": 429, "overloaded_error": 529, "invalid_request_error": 400}.get(
        str(error.get("type")), 500
    )
    return exception_frame(exception_for(status), str(error.get("message", "stream failed")))
