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
from sluice.formats.registry import record_of

# The local estimate's ratio: about four characters a token in English text and code, the figure
# Anthropic, OpenAI and Google all quote; images count a flat 1,600 tokens (a large one's cost).
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600


def count_request(target: WireFormat, doc: dict[str, Any], model: str) -> dict[str, Any]:
    """The target's counting request, made from a generation body in its format."""
    return record_of(target).counting.request(doc, model)


def counted(target: WireFormat, doc: dict[str, Any]) -> int:
    value = record_of(target).counting.count(doc)
    if not isinstance(value, int):
        raise SluiceError(ErrorKind.PROVIDER_ERROR, "The provider's token count has no count in it.")
    return value


def count_body(wire: WireFormat, tokens: int) -> bytes:
    """A token count in the caller's counting shape."""
    return orjson.dumps(record_of(wire).counting.answer(tokens))


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
