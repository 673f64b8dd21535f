"""The single outbound HTTP seam: one pooled aiohttp session per process.

Transport failures become `SluiceError`s here and nowhere else. Nothing in this module logs
headers or bodies, so provider credentials cannot leak through it.
"""

from __future__ import annotations

import asyncio
import errno
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.tasks import cancel, spawn
from sluice.core.trace_context import OUTBOUND_TRACEPARENT
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
    that is never iterated), the slot is given back when the response is garbage collected."""

    def __init__(
        self,
        resp: aiohttp.ClientResponse,
        provider: str,
        release: Callable[[], None],
        read_timeout_kind: Callable[[], SluiceError | None] = lambda: None,
    ) -> None:
        self._resp = resp
        self._provider = provider
        self._release = release
        self._read_timeout_kind = read_timeout_kind
        weakref.finalize(self, release)
        self.status = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except TimeoutError:
            raise self._read_timeout_kind() or _broken(self._provider, TimeoutError()) from None
        except aiohttp.ClientError as exc:
            raise _broken(self._provider, exc) from None
        finally:
            self._resp.release()
            self._release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except TimeoutError:
            raise self._read_timeout_kind() or _broken(self._provider, TimeoutError()) from None
        except aiohttp.ClientError as exc:
            raise _broken(self._provider, exc) from None
        finally:
            self._resp.release()
            self._release()

    def close(self) -> None:
        self._resp.close()
        self._release()


def _broken(provider: str, exc: BaseException) -> SluiceError:
    if isinstance(exc, asyncio.TimeoutError):
        return SluiceError(ErrorKind.PROVIDER_TIMEOUT, f"provider {provider} stopped sending (read timeout)")
    return SluiceError(ErrorKind.PROVIDER_STREAM_BROKEN, f"provider {provider} closed the connection mid-response")


_MAX_CACHED = 256  # URLs and timeout sets kept built; a caller's model can name new URLs, so bounded
_timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}
_targets: dict[str, URL] = {}


def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for `timeouts`, built once per set (a provider's are fixed until a reload):
    sock_connect, not connect: aiohttp's `connect` also runs while waiting for a pooled
    connection, and that wait is the gateway's, timed by the slot gate."""
    built = _timeouts.get(timeouts)
    if built is None:
        if len(_timeouts) >= _MAX_CACHED:
            _timeouts.clear()
        built = _timeouts[timeouts] = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.connect, sock_read=timeouts.read
        )
    return built


def _target(url: str) -> URL:
    """`url` sent as built (encoded=True), parsed once per URL string: providers escape what they
    put in a URL, and yarl must not decode it again (it would turn %3A back into ':' under a SigV4
    signature, or %2E%2E into a '..' segment it then collapses). yarl's URL is immutable."""
    target = _targets.get(url)
    if target is None:
        if len(_targets) >= _MAX_CACHED:
            _targets.clear()
        target = _targets[url] = URL(url, encoded=True)
    return target


def _local_exhaustion(exc: aiohttp.ClientConnectorError) -> bool:
    return exc.os_error.errno in _LOCAL_EXHAUSTION


class UpstreamClient:
    """One aiohttp session for the process. The session's connector has no cap of its own: each
    provider's `SlotGate` bounds its open exchanges (`set_pool`), so a request never waits inside
    aiohttp, where the wait would run on the provider's first-byte clock."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
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

    def _gate(self, provider: str) -> SlotGate:
        gate = self._gates.get(provider)
        if gate is None:  # identity providers, audit sinks, ...: uncapped
            gate = self._gates[provider] = SlotGate(PoolLimits())
        return gate

    async def start(self) -> None:
        if self._lag_task is None:
            self._lag_task = spawn(self.lag.run(), name="upstream-loop-lag")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
            # No cookie jar: the session is shared by every caller, so a provider's Set-Cookie (e.g.
            # a CDN's bot-management cookie) must not be stored and replayed on other tenants' calls.
            self._session = aiohttp.ClientSession(
                connector=connector,
                skip_auto_headers=("User-Agent",),
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def close(self) -> None:
        await cancel(self._lag_task)
        self._lag_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        if self._session is None:
            await self.start()
        assert self._session is not None
        client_timeout = _client_timeout(timeouts)
        if (traceparent := OUTBOUND_TRACEPARENT.get()) is not None:  # tracing on (sluice.observability)
            headers = {**headers, "traceparent": traceparent}
        try:
            release = await self._gate(provider).acquire(provider)
        except SluiceError:
            self._count(provider, "pool")
            raise
        try:
            resp = await self._send(method, provider, url, headers, body, timeouts, client_timeout)
        except BaseException:
            release()
            raise

        def read_timeout_kind() -> SluiceError | None:
            now = asyncio.get_running_loop().time()
            return self._stalled(provider, now - timeouts.read, now)

        return UpstreamResponse(resp, provider, release, read_timeout_kind)

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
        method: str,
        provider: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeouts: Timeouts,
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        assert self._session is not None
        started = asyncio.get_running_loop().time()
        try:
            # The provider's clock starts once the request has a slot: waiting for one is not its time.
            async with asyncio.timeout(timeouts.first_byte):
                target = _target(url)
                return await self._session.request(method, target, data=body, headers=headers, timeout=client_timeout)
        except TimeoutError as exc:
            if isinstance(exc, aiohttp.ConnectionTimeoutError):
                end = started + timeouts.connect
            elif isinstance(exc, aiohttp.ServerTimeoutError):  # silence while reading the head
                end = asyncio.get_running_loop().time()
                started = max(started, end - timeouts.read)
            else:
                end = started + timeouts.first_byte
            raise self._stalled(provider, started, end) or SluiceError(
                ErrorKind.PROVIDER_TIMEOUT, f"provider {provider} did not answer within {timeouts.first_byte:g} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            if _local_exhaustion(exc):
                self._count(provider, "sockets")
                raise saturated(provider, f"no socket to open: {exc.os_error.strerror or exc.os_error}") from None
            raise SluiceError(
                ErrorKind.PROVIDER_UNREACHABLE, f"provider {provider} is unreachable (connection failed)"
            ) from None
        except aiohttp.ClientError:
            raise SluiceError(ErrorKind.PROVIDER_UNREACHABLE, f"provider {provider} dropped the connection") from None
