"""The provider protocol: one small interface per upstream API.

Two questions decide how a request reaches a provider:
- `speaks(wire, operation)`: the provider takes the caller's format natively, so the body and the
  answer pass through untouched (the hot path: no decoding, no extra cost).
- `wire_for(model, operation)`: otherwise, the format the gateway should translate the request into
  (`sluice.translation`), or None when this operation cannot reach the provider at all (a token
  count then gets a local estimate; embeddings are refused). A provider added later only has to
  answer these two; the engine does the translating.
"""

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
    wire: WireFormat  # the format of `body`: the caller's, or the one it was translated into
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
    # True when the model name goes into the upstream URL's path (Gemini, Vertex, Bedrock, Azure
    # deployments): the engine then refuses a name with '/' (sluice.core.model_names), and the
    # provider escapes it with quote(name, safe="").
    model_in_url: bool

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        """True when the provider takes this wire format natively for `model`, so bodies pass
        unchanged (per model: a Bedrock or Vertex provider takes Claude and others differently)."""
        ...

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        """The format to translate into when the caller's is not spoken; None: not reachable."""
        ...

    def serves(self, model: str) -> bool:
        """True when a bare model name plausibly belongs to this provider."""
        ...

    async def send(self, call: ProviderCall) -> ProviderReply: ...


def join_url(base: str, path: str, query: str = "") -> str:
    url = base.rstrip("/") + path
    return f"{url}?{query}" if query else url
