"""The HTTP/1.1 client against servers that write exact bytes: framing, reuse, refusal, bodies."""

from __future__ import annotations

import asyncio
import gc
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from sluice.core.errors import ErrorKind, SluiceError
from sluice.upstream import h1
from sluice.upstream.client import Timeouts, UpstreamClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Answers each request with what `handler` writes; counts connections and keeps the
    requests' bytes as read."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/messages"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        return head + body

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            await self.handler(reader, writer, number)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def answer(body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


def keep_answering(server_ref: list[RawServer], reply: Callable[[bytes], bytes]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        while (request := await server_ref[0].read_request(reader)) is not None:
            writer.write(reply(request))
            await writer.drain()

    return handler


async def served(reply: Callable[[bytes], bytes]) -> AsyncIterator[RawServer]:
    ref: list[RawServer] = []
    server = RawServer(keep_answering(ref, reply))
    ref.append(server)
    async with server:
        yield server


async def body_of(conn: h1.Connection) -> bytes:
    pieces = []
    while (piece := await conn.next_chunk()) is not None:
        pieces.append(piece)
    conn.finish()
    return b"".join(pieces)


async def test_a_connection_is_reused_for_the_next_request_and_not_after_connection_close() -> None:
    # Fails when keep-alive is read after the message (the parser has moved on): every request
    # then opened a connection of its own.
    closing = iter([False, False, True, False])

    async for server in served(lambda _: answer(b"{}", "connection: close\r\n" if next(closing) else "")):
        pool = h1.Pool()
        for _ in range(4):
            conn = await h1.exchange(pool, "POST", server.url, {}, b"{}", 5, 5)
            assert conn.status == 200
            assert await body_of(conn) == b"{}"
            await asyncio.sleep(0.01)
        pool.close()
        assert server.connections == 2  # the third answer said close: the fourth opened a new one


async def test_the_framing_headers_are_the_clients_own() -> None:
    async for server in served(lambda _: answer(b"ok")):
        pool = h1.Pool()
        headers = {
            "Host": "evil.example",
            "Content-Length": "0",
            "Transfer-Encoding": "chunked",
            "Connection": "upgrade",
            "x-api-key": "k",
        }
        conn = await h1.exchange(pool, "POST", server.url + "?beta=true", headers, b'{"a":1}', 5, 5)
        await body_of(conn)
        pool.close()
        sent = server.requests[0]
        head, body = sent.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/messages?beta=true HTTP/1.1"
        assert sorted(lines[1:]) == sorted(
            [f"host: 127.0.0.1:{server.port}".encode(), b"content-length: 7", b"x-api-key: k"]
        )
        assert body == b'{"a":1}'


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("POST", "/v1/messages", {"x-model": "a\r\nx-injected: 1"}),
        ("POST", "/v1/messages", {"x-model": "a\nb"}),
        ("POST", "/v1/messages", {"x-model": "a\x00b"}),
        ("POST", "/v1/messages", {"x bad: name": "v"}),
        ("POST", "/v1/messages", {"x-model": "\u20ac"}),  # outside Latin-1: no byte form on the wire
        ("HEAD", "/v1/messages", {}),  # its answer's Content-Length frames no body
        ("POST", "/v1/models/a b:generate", {}),
        ("POST", "/v1/models/a\r\nHost: evil/x", {}),
        ("POST", "/v1/models/é", {}),
        ("POST /x HTTP/1.1\r\n", "/v1/messages", {}),
    ],
)
async def test_a_request_that_would_be_split_or_changed_is_refused_before_a_byte_is_sent(
    method: str, path: str, headers: dict[str, str]
) -> None:
    async for server in served(lambda _: answer(b"{}")):
        pool = h1.Pool()
        with pytest.raises(h1.RefusedRequest):
            await h1.exchange(pool, method, f"http://127.0.0.1:{server.port}{path}", headers, b"{}", 5, 5)
        pool.close()
        await asyncio.sleep(0.01)
        assert server.connections == 0


async def test_the_upstream_client_answers_a_refused_request_as_the_callers() -> None:
    client = UpstreamClient()
    try:
        with pytest.raises(SluiceError) as err:
            await client.post("p", "http://127.0.0.1:1/v1/models/a b", {}, b"{}", Timeouts())
        assert err.value.kind is ErrorKind.CALLER_BAD_REQUEST
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            b"hello world",
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n"
            % len(gzip.compress(b"zipped" * 50))
            + gzip.compress(b"zipped" * 50),
            b"zipped" * 50,
        ),
        (
            b"HTTP/1.1 200 OK\r\ncontent-encoding: deflate\r\ncontent-length: %d\r\n\r\n"
            % len(zlib.compress(b"deflated" * 50))
            + zlib.compress(b"deflated" * 50),
            b"deflated" * 50,
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"ok"),
    ],
    ids=["chunked", "gzip", "deflate", "interim-100"],
)
async def test_bodies_are_read_in_every_framing(raw: bytes, expected: bytes) -> None:
    async for server in served(lambda _: raw):
        pool = h1.Pool()
        conn = await h1.exchange(pool, "POST", server.url, {}, b"{}", 5, 5)
        assert conn.status == 200
        assert await body_of(conn) == expected
        pool.close()


async def test_a_body_until_close_ends_with_the_connection_which_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"close")

    server = RawServer(handler)
    async with server:
        pool = h1.Pool()
        conn = await h1.exchange(pool, "POST", server.url, {}, b"{}", 5, 5)
        assert await body_of(conn) == b"until close"
        assert pool.idle_count() == 0
        pool.close()


async def test_a_large_body_arrives_whole_through_backpressure() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: the reader pauses the socket past 256 KB buffered
    async for server in served(lambda _: answer(big)):
        pool = h1.Pool()
        conn = await h1.exchange(pool, "POST", server.url, {}, big, 5, 5)
        pieces = []
        while (piece := await conn.next_chunk()) is not None:
            pieces.append(piece)
            await asyncio.sleep(0.001)  # a slow reader
        conn.finish()
        assert b"".join(pieces) == big
        assert server.requests[0].endswith(big)
        pool.close()


async def test_a_body_cut_short_and_a_silent_upstream_fail_the_exchange() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await server.read_request(reader)
        if number == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
            await writer.drain()
            return  # closed: 90 bytes never come
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    server = RawServer(handler)
    async with server:
        pool = h1.Pool()
        conn = await h1.exchange(pool, "POST", server.url, {}, b"{}", 5, 5)
        with pytest.raises(h1.TransportError):
            await body_of(conn)
        conn = await h1.exchange(pool, "POST", server.url, {}, b"{}", 5, 0.2)
        with pytest.raises(h1.ReadTimeout):
            await body_of(conn)
        conn.abort()
        pool.close()


async def test_a_reused_connection_closed_under_the_request_is_retried_once_only_when_idempotent() -> None:
    # The upstream closes a kept-alive connection just as the next request goes out (its idle
    # timeout): a GET is sent again on a new connection, a POST (maybe acted on) is not.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await server.read_request(reader)
        writer.write(answer(b"first"))
        await writer.drain()
        await server.read_request(reader)  # the second request on this connection: no answer, closed

    server = RawServer(handler)
    async with server:
        for method in ("GET", "POST"):
            pool = h1.Pool()  # each method starts on a connection that has answered once
            conn = await h1.exchange(pool, method, server.url, {}, None, 5, 5)
            assert await body_of(conn) == b"first"
            if method == "GET":
                conn = await h1.exchange(pool, method, server.url, {}, None, 5, 5)
                assert await body_of(conn) == b"first"  # from a new connection
            else:
                with pytest.raises(h1.TransportError):
                    await h1.exchange(pool, method, server.url, {}, None, 5, 5)
            pool.close()
        assert server.connections == 3


async def test_an_idle_connection_the_upstream_closed_or_wrote_to_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> None:
        await server.read_request(reader)
        writer.write(answer(b"ok"))
        await writer.drain()
        if number == 1:
            return  # closed while idle
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstale")  # an answer nobody asked for
        await writer.drain()
        while await server.read_request(reader) is not None:
            writer.write(answer(b"ok"))

    server = RawServer(handler)
    async with server:
        pool = h1.Pool()
        for _ in range(3):
            conn = await h1.exchange(pool, "POST", server.url, {}, b"{}", 5, 5)
            assert await body_of(conn) == b"ok"
            await asyncio.sleep(0.05)
        pool.close()
        assert server.connections == 3


async def test_an_answer_never_read_closes_its_connection_and_frees_its_slot() -> None:
    # Fails if the unread connection goes back to the pool: the next request on it would read the
    # previous request's answer.
    counter = iter(range(100))
    async for server in served(lambda _: answer(b"answer-%d" % next(counter))):
        client = UpstreamClient()
        try:
            resp = await client.post("p", server.url, {}, b"{}", Timeouts())
            assert resp.status == 200
            gate = client.gates()["p"]
            assert gate.in_use == 1
            del resp
            gc.collect()
            assert gate.in_use == 0
            resp = await client.post("p", server.url, {}, b"{}", Timeouts())
            assert await resp.read() == b"answer-1"
            assert client.idle_connections() == 1
        finally:
            await client.close()
        assert server.connections == 2
