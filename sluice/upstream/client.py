"""The single outbound HTTP seam: one pooled aiohttp session per process.

Transport failures become `SluiceError`s here and nowhere else. Nothing in this module logs
headers or bodies, so provider credentials cannot leak through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.trace_context import OUTBOUND_TRACEPARENT


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    first_byte: float = 120.0  # until the response's headers, and the first piece of a stream
    read: float = 300.0  # idle time allowed between two reads
    total: float = 1800.0  # the whole exchange, enforced by the engine


class UpstreamResponse:
    def __init__(self, resp: aiohttp.ClientResponse, provider: str) -> None:
        self._resp = resp
        self._provider = provider
        self.status = resp.status
        self.headers: CIMultiDictProxy[str] = resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _broken(self._provider, exc) from None
        finally:
            self._resp.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _broken(self._provider, exc) from None
        finally:
            self._resp.release()

    def close(self) -> None:
        self._resp.close()


def _broken(provider: str, exc: BaseException) -> SluiceError:
    if isinstance(exc, asyncio.TimeoutError):
        return SluiceError(ErrorKind.PROVIDER_TIMEOUT, f"provider {provider} stopped sending (read timeout)")
    return SluiceError(ErrorKind.PROVIDER_STREAM_BROKEN, f"provider {provider} closed the connection mid-response")


class UpstreamClient:
    def __init__(self, *, pool_size: int = 1000) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ttl_dns_cache=300, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",), trust_env=False
            )

    async def close(self) -> None:
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
        timeout = aiohttp.ClientTimeout(total=None, connect=timeouts.connect, sock_read=timeouts.read)
        if (traceparent := OUTBOUND_TRACEPARENT.get()) is not None:  # tracing on (sluice.observability)
            headers = {**headers, "traceparent": traceparent}
        try:
            async with asyncio.timeout(timeouts.first_byte):
                # Sent as built (encoded=True): providers escape what they put in a URL, and yarl
                # must not decode it again (it would turn %3A back into ':' under a SigV4
                # signature, or %2E%2E into a '..' segment it then collapses).
                target = URL(url, encoded=True)
                resp = await self._session.request(method, target, data=body, headers=headers, timeout=timeout)
        except TimeoutError:
            raise SluiceError(
                ErrorKind.PROVIDER_TIMEOUT, f"provider {provider} did not answer within {timeouts.first_byte:g} s"
            ) from None
        except aiohttp.ClientConnectorError:
            raise SluiceError(
                ErrorKind.PROVIDER_UNREACHABLE, f"provider {provider} is unreachable (connection failed)"
            ) from None
        except aiohttp.ClientError:
            raise SluiceError(ErrorKind.PROVIDER_UNREACHABLE, f"provider {provider} dropped the connection") from None
        return UpstreamResponse(resp, provider)
