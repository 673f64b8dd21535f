"""Reading answers as they pass: usage from whole bodies, and the stream observer of each format."""

from __future__ import annotations

from typing import Protocol

import orjson

from sluice.core.types import Usage, WireFormat
from sluice.formats import observer
from sluice.formats.registry import record_of

# Generated text is estimated at one token per three characters while it streams: generous for
# every tokenizer in use, so an estimate-based cut errs on the side of the budget.
CHARS_PER_TOKEN = 3


class StreamObserver(Protocol):
    usage: Usage
    error: str | None
    completed: bool
    count_output: bool
    output_chars: int
    captured: list[str] | None

    def feed(self, chunk: bytes) -> bytes: ...


def usage_of(wire: WireFormat, body: bytes) -> Usage:
    """The usage a whole answer of format `wire` reports (an empty Usage when it is not JSON)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Usage()
    return record_of(wire).usage(doc) if isinstance(doc, dict) else Usage()


def stream_observer(wire: WireFormat, hide_usage: bool) -> StreamObserver:
    """The observer of a stream in the provider's format `wire` (`sluice.formats.observer`);
    `hide_usage` takes out the OpenAI Chat usage chunk the gateway asked for on the caller's behalf."""
    return observer.StreamObserver(record_of(wire).reader, hide_usage=hide_usage)
