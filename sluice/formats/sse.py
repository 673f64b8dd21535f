"""Incremental Server-Sent Events codec (https://html.spec.whatwg.org/#server-sent-events).

The decoder accepts arbitrary chunk boundaries and keeps the raw bytes of each event so a proxy
can forward an event unchanged or drop it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson


@dataclass(slots=True)
class SSEEvent:
    event: str
    data: bytes
    raw: bytes  # the event's bytes including its terminating blank line


class SSEDecoder:
    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return [parse_block(block) for block in self.feed_blocks(chunk)]

    def feed_blocks(self, chunk: bytes) -> list[bytes]:
        """The complete events in `chunk` as raw blocks (without the blank line), unparsed: a
        proxy parses only the few events it needs."""
        buf = self._buf + chunk if self._buf else chunk
        held = b""
        if buf.endswith(b"\r"):
            # The matching \n may open the next chunk; decide once it is here.
            buf, held = buf[:-1], b"\r"
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if buf.endswith(b"\n\n") and not buf.endswith(b"\n\n\n"):
            # The common case (whole events, nothing left over): the same blocks as the scan below,
            # found in one pass of C. (A third newline could end an earlier block; the scan decides.)
            self._buf = held
            return buf[:-2].split(b"\n\n")
        blocks: list[bytes] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            blocks.append(buf[start:end])
            start = end + 2
        self._buf = buf[start:] + held
        return blocks

    @property
    def pending(self) -> bytes:
        return self._buf


def parse_block(block: bytes) -> SSEEvent:
    event = "message"
    data_lines: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data_lines.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    return SSEEvent(event=event, data=b"\n".join(data_lines), raw=block + b"\n\n")


def encode(data: bytes, event: str | None = None) -> bytes:
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


def generated(block: bytes, pattern: re.Pattern[bytes], captured: list[str] | None) -> int:
    """Length of the generated text in an event, read from its raw JSON without parsing it:
    escapes and multi-byte characters count a little high, which errs on the side of budgets.
    The text itself is decoded onto `captured` when content is being captured (one search for
    both: two were the largest cost of a guarded stream)."""
    raw = pattern.findall(block)
    if captured is not None:
        captured.extend([orjson.loads(b'"' + piece + b'"') for piece in raw])
    return sum(map(len, raw))
