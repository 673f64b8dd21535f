"""What the engine takes from the edge (`Inbound`) and hands back to it (`Outcome`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from sluice.core.canonical import ChatRequest, Failure
from sluice.core.types import Operation, WireFormat


@dataclass(slots=True)
class Inbound:
    wire: WireFormat
    operation: Operation
    body: bytes
    doc: dict[str, Any]
    headers: Mapping[str, str]
    query: str = ""
    model: str | None = None  # when the model travels in the URL (Gemini), not in the body
    stream: bool | None = None  # likewise for streaming
    canonical: ChatRequest | None = None  # decoded once, when some attempt needs translating


@dataclass(slots=True)
class Outcome:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None  # a stream whose first piece has arrived
    failure: Failure | None = None  # a translated upstream error: the edge renders it for the caller
