"""The provider protocol: one small interface per upstream API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.core.context import RequestContext
from sluice.core.types import Operation, WireFormat
from sluice.upstream.client import Timeouts


@dataclass(frozen=True, slots=True)
class ProviderKey:
    name: str
    secret: str = field(repr=False)
    weight: float = 1.0


@dataclass(slots=True)
class ProviderCall:
    ctx: RequestContext
    wire: WireFormat
    operation: Operation
    model: str  # the provider's own model name
    body: bytes  # what to send, already in the provider's format
    doc: dict[str, Any]  # the parsed body
    inbound_headers: Mapping[str, str]
    query: str
    stream: bool
    key: ProviderKey | None


@dataclass(slots=True)
class ProviderReply:
    status: int
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)  # safe to show the caller
    body: bytes | None = None  # whole body, when not streaming or on error
    chunks: AsyncIterator[bytes] | None = None  # streamed body


class Provider(Protocol):
    name: str
    type: str
    keys: list[ProviderKey]
    timeouts: Timeouts

    def speaks(self, wire: WireFormat, operation: Operation) -> bool:
        """True when the provider takes this wire format natively, so bodies pass unchanged."""
        ...

    def serves(self, model: str) -> bool:
        """True when a bare model name plausibly belongs to this provider."""
        ...

    async def send(self, call: ProviderCall) -> ProviderReply: ...


def join_url(base: str, path: str, query: str = "") -> str:
    url = base.rstrip("/") + path
    return f"{url}?{query}" if query else url
