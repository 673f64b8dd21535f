"""AWS event-stream framing (`application/vnd.amazon.eventstream`), as Bedrock's
InvokeModelWithResponseStream and ConverseStream use it, and the frames Bedrock's InvokeModel streams carry.

A frame is: total length (4 bytes, big endian), headers length (4), CRC32 of those 8 bytes, the
headers, the payload, and a CRC32 of everything before it. Headers are `name-len(1) name
type(1) value`; Bedrock only sends strings (type 7: `len(2) utf-8`). Decoding checks both CRCs
and botocore's limits (headers up to 128 KiB, payload up to 16 MiB); it is here rather than
botocore's `EventStreamBuffer` because it runs on every chunk of every Bedrock stream and that one
cost about 9 µs a frame (`bench/observer_feed.py`); tests check it against botocore's parser.
Anthropic's events inside InvokeModel frames: `formats/anthropic/invoke.py`.
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass

import orjson

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


_PRELUDE = struct.Struct(">III")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
MAX_HEADERS = 128 * 1024  # botocore's _MAX_HEADERS_LENGTH
MAX_PAYLOAD = 16 * 1024 * 1024  # botocore's _MAX_PAYLOAD_LENGTH
# Header value sizes by type (0, 1: booleans with no value; 6, 7: length-prefixed bytes, string).
_FIXED = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}


class FrameDecoder:
    """Frames completed by each chunk. A corrupt frame (bad length or CRC) breaks the stream: what
    follows it cannot be trusted to start on a frame boundary."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[Frame]:
        buf = self._buf + chunk if self._buf else chunk
        frames: list[Frame] = []
        pos, size = 0, len(buf)
        while size - pos >= 12:
            total, head, prelude_crc = _PRELUDE.unpack_from(buf, pos)
            if zlib.crc32(buf[pos : pos + 8]) != prelude_crc:
                raise _broken("the prelude CRC does not match")
            if head > MAX_HEADERS or total < head + 16 or total - head - 16 > MAX_PAYLOAD:
                raise _broken(f"impossible lengths (total {total}, headers {head})")
            if size - pos < total:
                break
            end = pos + total
            if zlib.crc32(buf[pos : end - 4]) != _U32.unpack_from(buf, end - 4)[0]:
                raise _broken("the message CRC does not match")
            start = pos + 12
            frames.append(Frame(_headers(buf, start, start + head), buf[start + head : end - 4]))
            pos = end
        self._buf = buf[pos:]
        return frames


def _headers(buf: bytes, pos: int, end: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    try:
        while pos < end:
            name_end = pos + 1 + buf[pos]
            name = buf[pos + 1 : name_end].decode()
            kind = buf[name_end]
            pos = name_end + 1
            if kind == _STRING or kind == 6:
                value_end = pos + 2 + _U16.unpack_from(buf, pos)[0]
                raw = buf[pos + 2 : value_end]
                value = raw.decode() if kind == _STRING else str(raw)
            elif kind in _FIXED:
                value_end = pos + _FIXED[kind]
                field = buf[pos:value_end]
                if kind < 2:
                    value = str(kind == 0)
                elif kind == 9:
                    value = str(field)  # a UUID's 16 bytes, as botocore gives them
                else:
                    value = str(int.from_bytes(field, "big", signed=True))
            else:
                raise _broken(f"unknown header type {kind}")
            if value_end > end or name_end >= end:
                raise _broken("a header runs past the headers")
            headers[name] = value
            pos = value_end
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise _broken(f"unreadable headers ({exc})") from None
    return headers


def _broken(why: str) -> SluiceError:
    return SluiceError(ErrorKind.PROVIDER_STREAM_BROKEN, f"the provider sent a corrupt event-stream frame ({why})")
