"""Reading answers as they pass: usage from bodies and streams, estimates for streams that
end early, the stream's first piece, and the request log entry of a finished request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol

import orjson

from sluice.core.context import RequestContext
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Usage, WireFormat
from sluice.formats import observer
from sluice.formats.registry import record_of
from sluice.providers.base import Provider
from sluice.storage.records import RequestLogEntry

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


async def first_piece(chunks: AsyncIterator[bytes], provider: Provider, ctx: RequestContext) -> AsyncIterator[bytes]:
    """Reads a stream's first piece (within the provider's first-byte timeout) and returns the
    stream again, whole. Failures surface here, where a fallback can still take over."""
    iterator = chunks.__aiter__()
    try:
        async with asyncio.timeout(provider.timeouts.first_byte):
            first = await iterator.__anext__()
    except StopAsyncIteration:
        first = b""
    except TimeoutError:
        await close_stream(iterator)
        raise SluiceError(
            ErrorKind.PROVIDER_TIMEOUT,
            f"provider {provider.name} sent nothing within {provider.timeouts.first_byte:g} s",
        ) from None
    except BaseException:
        await close_stream(iterator)
        raise
    ctx.mark_first_byte()

    async def whole() -> AsyncIterator[bytes]:
        try:
            if first:
                yield first
            async for chunk in iterator:
                yield chunk
        finally:
            await close_stream(iterator)

    return whole()


async def close_stream(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


def seconds_of(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def estimated_usage(ctx: RequestContext, observer: StreamObserver) -> Usage:
    """Usage of a stream that ended early: what the stream reported, topped up by estimates."""
    seen = observer.usage
    return Usage(
        input_tokens=seen.input_tokens or (0 if seen.cache_read_tokens else ctx.input_estimate),
        output_tokens=max(seen.output_tokens, observer.output_chars // CHARS_PER_TOKEN),
        cache_read_tokens=seen.cache_read_tokens,
        cache_write_tokens=seen.cache_write_tokens,
        cache_write_1h_tokens=seen.cache_write_1h_tokens,
        web_searches=seen.web_searches,
        served_model=seen.served_model,
        service_tier=seen.service_tier,
        reported=True,  # an estimate stands in for the report
    )


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


def redact_provider_secrets(body: bytes, provider: Provider) -> bytes:
    for key in provider.keys:
        if key.secret and key.secret.encode() in body:
            body = body.replace(key.secret.encode(), b"[redacted]")
    return body


def entry_of(ctx: RequestContext, mcp_tools: tuple[str, ...] = ()) -> RequestLogEntry:
    u = ctx.usage
    return RequestLogEntry(
        request_id=ctx.request_id,
        ts=datetime.fromtimestamp(ctx.started_unix, UTC),
        path=ctx.path,
        surface=ctx.surface.value,
        status=ctx.status,
        decision=ctx.decision,
        reason=ctx.reason,
        error_kind=ctx.error_kind,
        virtual_key_id=ctx.virtual_key_id,
        virtual_key_name=ctx.virtual_key_name,
        team_id=ctx.team_id,
        customer_id=ctx.customer_id,
        client=ctx.client[:300],
        session_id=ctx.session_id,
        user_id=ctx.user_id,
        provider=ctx.provider,
        provider_key_name=ctx.provider_key_name,
        requested_model=ctx.requested_model,
        model=ctx.model,
        stream=ctx.stream,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        cost_pico=ctx.cost_pico,
        latency_ms=round(ctx.elapsed() * 1000, 3),
        ttfb_ms=round(ctx.ttfb * 1000, 3) if ctx.ttfb is not None else None,
        attempts=ctx.attempts,
        route=ctx.route,
        mcp_tools=mcp_tools,
    )
