"""Shared helpers for the codec tests: fixtures, streaming at arbitrary chunk sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from sluice.core.canonical import ChatRequest, StreamEvent
from sluice.formats.codec import Codec

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def decode_stream(codec: Codec, data: bytes, size: int = 1 << 20) -> list[StreamEvent]:
    decoder = codec.stream_decoder()
    events = [e for c in chunks(data, size) for e in decoder.feed(c)]
    return events + decoder.close()


def encode_stream(codec: Codec, events: list[StreamEvent], request: ChatRequest | None = None) -> bytes:
    encoder = codec.stream_encoder(request or ChatRequest(model="m", messages=[]))
    return b"".join(encoder.encode(e) for e in events) + encoder.close()


def sse_payloads(data: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed JSON or raw text) for each SSE event."""
    out: list[tuple[str | None, Any]] = []
    for block in data.split(b"\n\n"):
        if not block.strip():
            continue
        name = None
        payload = b""
        for line in block.split(b"\n"):
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                payload = line[6:]
        out.append((name, payload.decode() if payload == b"[DONE]" else orjson.loads(payload)))
    return out
