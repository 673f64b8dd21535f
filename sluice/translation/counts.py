"""Token counting across formats: the target's counting request, its count in the caller's
shape, and the local estimate for providers that cannot count."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import orjson

from sluice.core.canonical import ChatRequest, Image, Part, Text, Thinking, ToolCall, ToolResult
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat

# Where each format counts tokens, and the request fields its counting endpoint accepts.
_COUNT_FIELDS: dict[WireFormat, frozenset[str]] = {
    WireFormat.ANTHROPIC_MESSAGES: frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"}),
    WireFormat.OPENAI_RESPONSES: frozenset(
        {"model", "input", "instructions", "tools", "tool_choice", "reasoning", "text", "parallel_tool_calls"}
    ),
}
# The local estimate's ratio: about four characters a token in English text and code, the figure
# Anthropic, OpenAI and Google all quote; images count a flat 1,600 tokens (a large one's cost).
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600


def count_request(target: WireFormat, doc: dict[str, Any], model: str) -> dict[str, Any]:
    if target is WireFormat.GEMINI:
        return {"generateContentRequest": {**doc, "model": f"models/{model}"}}
    fields = _COUNT_FIELDS.get(target)
    return {k: v for k, v in doc.items() if k in fields} if fields else doc


def counted(target: WireFormat, doc: dict[str, Any]) -> int:
    value = doc.get("totalTokens") if target is WireFormat.GEMINI else doc.get("input_tokens")
    if not isinstance(value, int):
        raise SluiceError(ErrorKind.PROVIDER_ERROR, "The provider's token count has no count in it.")
    return value


def count_body(wire: WireFormat, tokens: int) -> bytes:
    """A token count in the caller's counting shape."""
    if wire is WireFormat.GEMINI:
        return orjson.dumps({"totalTokens": tokens})
    if wire is WireFormat.OPENAI_RESPONSES:
        return orjson.dumps({"object": "response.input_tokens", "input_tokens": tokens})
    return orjson.dumps({"input_tokens": tokens})


def local_count(request: ChatRequest) -> int:
    """An estimate for providers that cannot count: characters of every text the model would read
    (system, messages, tool calls and results, tool definitions) over `CHARS_PER_TOKEN`, plus
    `IMAGE_TOKENS` per image. Real tokenizers differ by tens of percent; callers use the count to
    decide when to compact a conversation, where an estimate serves."""
    chars, images = sum(len(t.text) for t in request.system), 0
    for message in request.messages:
        c, i = _size(message.parts)
        chars, images = chars + c, images + i
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return max(1, math.ceil(chars / CHARS_PER_TOKEN) + images * IMAGE_TOKENS)


def _size(parts: Iterable[Part]) -> tuple[int, int]:
    """(characters, images) in some content parts."""
    chars = images = 0
    for part in parts:
        if isinstance(part, Text | Thinking):
            chars += len(part.text)
        elif isinstance(part, Image):
            images += 1
        elif isinstance(part, ToolCall):
            chars += len(part.name) + len(part.arguments_json)
        elif isinstance(part, ToolResult):
            c, i = _size(part.content)
            chars, images = chars + c, images + i
    return chars, images
