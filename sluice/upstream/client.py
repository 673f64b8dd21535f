"""The single outbound HTTP seam: one keep-alive pool per process (`h1`, HTTP/1.1 on httptools).

Transport failures become `SluiceError`s here and nowhere else. Nothing in this module logs
headers or bodies, so provider credentials cannot leak through it.
"""

from __future__ import annotations

import asyncio
import errno
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from multidict import CIMultiDict, CIMultiDictProxy

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.tasks import cancel, spawn
from sluice.core.trace_context import OUTBOUND_TRACEPARENT
from sluice.upstream import h1
from sluice.upstream.lag import LoopLag
from sluice.upstream.pool import PoolLimits, SlotGate, saturated

# Errors of the gateway's own machine when it opens a connection, never of the provider: out of
# file descriptors (process or system), out of socket buffers, out of ephemeral ports.
_LOCAL_EXHAUSTION = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EADDRNOTAVAIL})


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 120.0  # until the response's headers, and the first piece of a stream
    read: float = 300.0  # idle time allowed between two reads
    total: float = 1800.0  # the whole exchange, enforced by the engine


class UpstreamResponse:
    """An answer's head, and its body to read once. Holds the provider's connection slot until the
    body is read, the stream ends or breaks, or `close()`; if none of these happens (a stream
    that is never iterated), the connection is closed and the slot given back when the response is
    garbage collected."""

    def __init__(
        self,
        conn: h1.Connection,
        provider: str,
        release: Callable[[], None],
        read_timeout_kind: Callable[[], SluiceError | None] = lambda: None,
    ) -> None:
        self._conn = conn
        self._provider = provider
        self._release = release
        self._read_timeout_kind = read_timeout_kind
        self._abandoned = weakref.finalize(self, _abandon, conn, release)
        self.status = conn.status
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict(conn.header_list))

    async def read(self) -> bytes:
        pieces: list[bytes] = []
        try:
            while (piece := await self._conn.next_chunk()) is not None:
                pieces.append(piece)
        except h1.ReadTimeout:
            raise self._read_timeout_kind() or _broken(self._provider, TimeoutError()) from None
        except h1.TransportError as exc:
            raise _broken(self._provider, exc) from None
        finally:
            self._finish()
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            while (piece := await self._conn.next_chunk()) is not None:
                yield piece
        except h1.ReadTimeout:
            raise self._read_timeout_kind() or _broken(self._provider, TimeoutError()) from None
        except h1.TransportError as exc:
            raise _broken(self._provider, exc) from None
        finally:
            self._finish()

    def _finish(self) -> None:
        self._abandoned.detach()
        self._conn.finish()
        self._release()

    def close(self) -> None:
        self._abandoned.detach()
        self._conn.abort()
        self._release()


def _abandon(conn: h1.Connection, release: Callable[[], None]) -> None:
    conn.abort()  # its unread answer would be the next request's otherwise
    release()


def _broken(provider: str, exc: BaseException) -> SluiceError:
    if isinstance(exc, asyncio.TimeoutError):
        return SluiceError(ErrorKind.PROVIDER_TIMEOUT, f"provider {provider} stopped sending (read timeout)")
    return SluiceError(ErrorKind.PROVIDER_STREAM_BROKEN, f"provider {provider} closed the connection mid-response")


def _local_exhaustion(exc: h1.ConnectFailed) -> bool:
    return exc.os_error.errno in _LOCAL_EXHAUSTION


class UpstreamClient:
    """One connection pool for the process, with no cap of its own: each provider's `SlotGate`
    bounds its open exchanges (`set_pool`), so a request never waits for a connection inside the
    client, where the wait would run on the provider's first-byte clock. It keeps no state between
    callers beyond idle connections: no cookie jar (a provider's Set-Cookie, e.g. a CDN's
    bot-management cookie, must not be replayed on other tenants' calls), no proxy from the
    environment, no headers of its own but the framing ones."""

    def __init__(self) -> None:
        self._pool: h1.Pool | None = None
        self._gates: dict[str, SlotGate] = {}
        # Requests answered GATEWAY_SATURATED, by (provider, reason): "pool" (no connection slot in
        # time), "sockets" (the process could not open one), "loop" (the event loop was stalled).
        self.saturated: dict[tuple[str, str], int] = {}
        self.lag = LoopLag()
        self._lag_task: asyncio.Task[None] | None = None

    def set_pool(self, provider: str, limits: PoolLimits) -> None:
        """Caps `provider`'s open exchanges. A new cap (live reload) applies to new requests; the
        ones in flight give their slot back to the gate they took it from."""
        gate = self._gates.get(provider)
        if gate is None or gate.limits != limits:
            self._gates[provider] = SlotGate(limits)

    def _count(self, provider: str, reason: str) -> None:
        self.saturated[provider, reason] = self.saturated.get((provider, reason), 0) + 1

    def gates(self) -> dict[str, SlotGate]:
        return dict(self._gates)

    def idle_connections(self) -> int:
        return self._pool.idle_count() if self._pool is not None else 0

    def _gate(self, provider: str) -> SlotGate:
        gate = self._gates.get(provider)
        if gate is None:  # identity providers, audit sinks, ...: uncapped
            gate = self._gates[provider] = SlotGate(PoolLimits())
        return gate

    async def start(self) -> None:
        if self._lag_task is None:
            self._lag_task = spawn(self.lag.run(), name="upstream-loop-lag")
        if self._pool is None:
            self._pool = h1.Pool()

    async def close(self) -> None:
        await cancel(self._lag_task)
        self._lag_task = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def post(
        self, provider: str, url: str, headers: Mapping[str, str], body: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        return await self.request("POST", provider, url, headers, body, timeouts)

    async def request(
        self,
        method: str,
        provider: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        if (traceparent := OUTBOUND_TRACEPARENT.get()) is not None:  # tracing on (sluice.observability)
            headers = {**headers, "traceparent": traceparent}
        try:
            release = await self._gate(provider).acquire(provider)
        except SluiceError:
            self._count(provider, "pool")
            raise
        try:
            conn = await self._send(self._pool, method, provider, url, headers, body, timeouts)
        except BaseException:
            release()
            raise

        def read_timeout_kind() -> SluiceError | None:
            now = asyncio.get_running_loop().time()
            return self._stalled(provider, now - timeouts.read, now)

        return UpstreamResponse(conn, provider, release, read_timeout_kind)

    def _stalled(self, provider: str, start: float, end: float) -> SluiceError | None:
        """GATEWAY_SATURATED when the event loop spent the timeout's window [start, end] largely
        stalled: the provider's answer may well have come in time and been read too late."""
        if not self.lag.overloaded(start, end):
            return None
        self._count(provider, "loop")
        stalled = self.lag.stalled(start, end)
        return saturated(provider, f"its event loop was overloaded for {stalled:.1f} s of a {end - start:g} s timeout")

    async def _send(
        self,
        pool: h1.Pool,
        method: str,
        provider: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Timeouts,
    ) -> h1.Connection:
        started = asyncio.get_running_loop().time()
        try:
            # The provider's clock starts once the request has a slot: waiting for one is not its time.
            async with asyncio.timeout(timeouts.first_byte):
                return await h1.exchange(pool, method, url, headers, body, timeouts.connect, timeouts.read)
        except h1.RefusedRequest as exc:
            why = f"the request to provider {provider} cannot be sent: {exc}"
            raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, why) from None
        except TimeoutError as exc:
            if isinstance(exc, h1.ConnectTimeout):
                end = started + timeouts.connect
            elif isinstance(exc, h1.ReadTimeout):  # silence while reading the head
                end = asyncio.get_running_loop().time()
                started = max(started, end - timeouts.read)
            else:
                end = started + timeouts.first_byte
            raise self._stalled(provider, started, end) or SluiceError(
                ErrorKind.PROVIDER_TIMEOUT, f"provider {provider} did not answer within {timeouts.first_byte:g} s"
            ) from None
        except h1.ConnectFailed as exc:
            if _local_exhaustion(exc):
                self._count(provider, "sockets")
                raise saturated(provider, f"no socket to open: {exc.os_error.strerror or exc.os_error}") from None
            raise SluiceError(
                ErrorKind.PROVIDER_UNREACHABLE, f"provider {provider} is unreachable (connection failed)"
            ) from None
        except h1.TransportError:
            raise SluiceError(ErrorKind.PROVIDER_UNREACHABLE, f"provider {provider} dropped the connection") from None
