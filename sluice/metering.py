"""Reading answers as they pass: usage from whole bodies, and the stream observer of each format."""

from __future__ import annotations

from typing import Protocol

from sluice.core.types import Usage, WireFormat
from sluice.formats import (
    anthropic_messages,
    bedrock_converse,
    bedrock_converse_stream,
    gemini,
    openai_chat,
    openai_responses,
)

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
    if wire is WireFormat.ANTHROPIC_MESSAGES:
        return anthropic_messages.usage_from_response(body)
    if wire is WireFormat.OPENAI_RESPONSES:
        return openai_responses.usage_from_response(body)
    if wire is WireFormat.GEMINI:
        return gemini.usage_from_response(body)
    if wire is WireFormat.BEDROCK_CONVERSE:
        return bedrock_converse.usage_from_response(body)
    return openai_chat.usage_from_response(body)


def stream_observer(wire: WireFormat, hide_usage: bool) -> StreamObserver:
    if wire is WireFormat.ANTHROPIC_MESSAGES:
        return anthropic_messages.StreamObserver()
    if wire is WireFormat.OPENAI_RESPONSES:
        return openai_responses.StreamObserver()
    if wire is WireFormat.GEMINI:
        return gemini.StreamObserver()
    if wire is WireFormat.BEDROCK_CONVERSE:
        return bedrock_converse_stream.ConverseStreamObserver()
    return openai_chat.StreamObserver(hide_usage_chunk=hide_usage)
