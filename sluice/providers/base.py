"""The provider protocol: one small interface per upstream API.

Two questions decide how a request reaches a provider:
- `speaks(wire, operation)`: the provider takes the caller's format natively, so the body and the
  answer pass through untouched (the hot path: no decoding, no extra cost).
- `wire_for(model, operation)`: otherwise, the format the gateway should translate the request into
  (`sluice.translation`), or None when this operation cannot reach the provider at all (a token
  count then gets a local estimate; embeddings are refused). A provider added later only has to
  answer these two; the engine does the translating.

A provider hands back every answer it gets as a `ProviderReply`, errors too (it raises only when
there is no answer: the connection failed, or the gateway has no credential for it). Its
`parse_error` turns an error reply into a `ProviderError`: an `ErrorKind` (the one thing retries,
fallbacks and circuit breakers decide on) and, when the reply is fit to show the caller as it is,
the reply itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.core.canonical import Failure
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.upstream.client import Timeouts


@dataclass(frozen=True, slots=True)
class ProviderKey:
    name: str
    secret: str = field(repr=False)
    weight: float = 1.0


@dataclass(slots=True)
class ProviderCall:
    wire: WireFormat  # the format of `body`: the caller's, or the one it was translated into
    operation: Operation
    model: str  # the provider's own model name
    body: bytes  # what to send, already in the provider's format
    doc: dict[str, Any]  # the parsed body; read-only (it may be the request's own, shared by retries)
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

    async def send(self, call: ProviderCall) -> ProviderReply:
        """The provider's answer, whatever its status; raises only when there is none."""
        ...

    def parse_error(self, reply: ProviderReply, call: ProviderCall) -> ProviderError:
        """What an error reply (status >= 400) to `call` means (see `error_by_status`)."""
        ...


class ProviderError(SluiceError):
    """A provider's error answer. `reply` is what the caller gets when this is the request's last
    word: the provider's own body, in the format of the call; None when the gateway answers with
    its own error for `kind` instead (the body speaks of the gateway's credential, or is in a
    format the caller does not know). `failure` is the reply decoded, set by the engine when the
    call was translated: the edge then says it in the caller's format."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        status: int,
        reply: ProviderReply | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(kind, message, retry_after=retry_after, upstream_status=status)
        self.status = status
        self.reply = reply
        self.failure: Failure | None = None


# Upstream statuses by what a retry or another provider can do about them. A status not named
# here is the request's own fault (4xx) or an answer nothing will change (other 5xx).
_KINDS_BY_STATUS = {
    401: ErrorKind.PROVIDER_AUTH,
    403: ErrorKind.PROVIDER_AUTH,
    408: ErrorKind.PROVIDER_TIMEOUT,
    429: ErrorKind.PROVIDER_RATE_LIMITED,
    500: ErrorKind.PROVIDER_ERROR,
    502: ErrorKind.PROVIDER_ERROR,
    503: ErrorKind.PROVIDER_OVERLOADED,
    504: ErrorKind.PROVIDER_TIMEOUT,
    529: ErrorKind.PROVIDER_OVERLOADED,  # Anthropic's "overloaded"
}


def kind_of_status(status: int) -> ErrorKind:
    """The kind an upstream error status stands for."""
    found = _KINDS_BY_STATUS.get(status)
    if found is not None:
        return found
    return ErrorKind.CALLER_BAD_REQUEST if status < 500 else ErrorKind.PROVIDER_REFUSED


def error_by_status(
    provider: str, reply: ProviderReply, key: ProviderKey | None, keys: list[ProviderKey]
) -> ProviderError:
    """The error of a provider whose error bodies are in the format of the call: the body reaches
    the caller as it is (without the gateway's secrets), except when the provider rejected the
    gateway's own credential, which is the platform team's to fix, not the caller's."""
    kind = kind_of_status(reply.status)
    retry_after = seconds_of(reply.headers.get("retry-after"))
    if kind is ErrorKind.PROVIDER_AUTH:
        none = "a request without credential (none is configured for it)"
        what = f"the gateway's credential '{key.name}'" if key else none
        message = f"Provider '{provider}' rejected {what}. Ask your platform team to check it."
        return ProviderError(kind, message, reply.status)
    if reply.body:
        reply.body = redact_secrets(reply.body, keys)
    return ProviderError(kind, f"provider answered {reply.status}", reply.status, reply, retry_after=retry_after)


def redact_secrets(body: bytes, keys: list[ProviderKey]) -> bytes:
    """`body` without any of the gateway's provider secrets (an upstream may echo a key back)."""
    for key in keys:
        if key.secret and key.secret.encode() in body:
            body = body.replace(key.secret.encode(), b"[redacted]")
    return body


def seconds_of(value: str | None) -> float | None:
    """A Retry-After header's seconds (the HTTP-date form is not used by LLM providers); None for
    anything else, `nan` and `inf` included (a hostile upstream must not stall the retry loop)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 86_400 else None


def join_url(base: str, path: str, query: str = "") -> str:
    url = base.rstrip("/") + path
    return f"{url}?{query}" if query else url
