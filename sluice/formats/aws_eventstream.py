"""AWS event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock's
InvokeModelWithResponseStream and ConverseStream use it, and the frames Bedrock's InvokeModel streams carry.

A frame is: total length (4 bytes, big endian), headers length (4), CRC32 of those 8 bytes, the
headers, the payload, and a CRC32 of everything before it. Headers are `name-len(1) name
type(1) value`; Bedrock only sends strings (type 7: `len(2) utf-8`). Decoding uses botocore's
own parser, which checks both CRCs; encoding is here because botocore has no encoder.
Anthropic's events inside InvokeModel frames: `formats/anthropic/invoke.py`.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from sluice.core.errors import ErrorKind, SluiceError

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7

# Bedrock's stream exceptions by the HTTP status they stand for (service-2.json of bedrock-runtime).
STREAM_EXCEPTIONS: dict[str, int] = {
    "throttlingException": 429,
    "validationException": 400,
    "modelTimeoutException": 408,
    "modelStreamErrorException": 424,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}


@dataclass(slots=True)
class Frame:
    headers: dict[str, str]
    payload: bytes

    @property
    def message_type(self) -> str:
        return self.headers.get(":message-type", "event")

    @property
    def event_type(self) -> str:
        return self.headers.get(":event-type") or self.headers.get(":exception-type", "")


def encode_frame(headers: dict[str, str], payload: bytes) -> bytes:
    head = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", _STRING, len(raw_value)) + raw_value


def event_frame(event_type: str, payload: dict[str, object]) -> bytes:
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_frame(headers, orjson.dumps(payload))


def chunk_frame(data: bytes) -> bytes:
    """An InvokeModel stream `chunk` carrying one model event (JSON bytes)."""
    return event_frame("chunk", {"bytes": base64.b64encode(data).decode()})


def exception_frame(exception_type: str, message: str) -> bytes:
    headers = {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"}
    return encode_frame(headers, orjson.dumps({"message": message}))


def exception_for(status: int) -> str:
    if status == 429:
        return "throttlingException"
    if status in (400, 413, 422):
        return "validationException"
    if status in (503, 529):
        return "serviceUnavailableException"
    if status >= 500:
        return "internalServerException"
    return "modelStreamErrorException"


class FrameDecoder:
    """Frames completed by each chunk. A corrupt frame (bad length or CRC) breaks the stream: what
    follows it cannot be trusted to start on a frame boundary."""

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()

    def feed(self, chunk: bytes) -> list[Frame]:
        self._buffer.add_data(chunk)
        try:
            return [_frame_of(message) for message in self._buffer]
        except ParserError as exc:
            raise SluiceError(
                ErrorKind.PROVIDER_STREAM_BROKEN, f"the provider sent a corrupt event-stream frame ({exc})"
            ) from None


def _frame_of(message: EventStreamMessage) -> Frame:
    headers = {str(k): str(v) for k, v in message.headers.items()}
    return Frame(headers, bytes(message.payload))
