"""HTTP/1.1 client exchanges on a raw asyncio protocol, parsed by httptools (llhttp), with a
keep-alive pool per origin.

Why not aiohttp's client: on the gateway's request path it was the largest single cost after the
edge (bench/results/upstream_clients.md: 90.6 CPU µs per JSON exchange against 27.6 on a raw
httptools protocol, 152 against 67 per stream). This module does only what a gateway's calls to
providers, identity providers and sinks need: one request at a time per connection, the framing
headers its own (a caller's `Host`, `Content-Length`, `Transfer-Encoding` or `Connection` never
reaches the wire), bodies framed by length, chunked or until close, gzip and deflate decoded,
interim 1xx answers skipped, backpressure both ways. Anything that could split a request (CR, LF,
NUL or another control character in the target or a header) is refused before a byte is sent.

It knows nothing of providers, slots or the gateway's errors: `client.py` maps its exceptions.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

KEEPALIVE_S = 60.0  # an idle connection older than this is closed rather than reused
_READ_HIGH = 256 * 1024  # bytes buffered unread before the socket is paused (backpressure)
_MAX_HEAD = 256 * 1024  # a response head larger than this is a broken (or hostile) upstream
_MAX_CACHED = 256  # targets kept parsed; a caller's model can name new URLs, so bounded
_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "OPTIONS", "TRACE"})
# Headers that frame the message or the connection: this module writes the ones it needs itself.
_FRAMING = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade",
     "proxy-connection", "expect"}
)  # fmt: skip
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a header value may hold tabs, never CR/LF/NUL
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f-\uffff]")  # a request target is visible ASCII only


class RefusedRequest(ValueError):
    """The request cannot be written without changing its meaning (control characters, a header
    name that is no token, a URL that is not http(s)). Nothing was sent."""


class ConnectFailed(OSError):
    """The TCP (or TLS) connection could not be opened; `os_error` says why."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(os_error.errno, os_error.strerror or str(os_error))
        self.os_error = os_error


class ConnectTimeout(TimeoutError):
    """The connection was not open within the connect timeout."""


class ReadTimeout(TimeoutError):
    """The upstream sent nothing for the read timeout, while the head or the body was awaited."""


class TransportError(Exception):
    """The connection broke, or the upstream sent what is not HTTP/1.1."""


@dataclass(frozen=True, slots=True)
class Target:
    origin: tuple[str, str, int]  # (scheme, host, port): the pool's key
    host_header: str
    path: str  # path and query, sent as given: providers escape what they put in a URL


_targets: dict[str, Target] = {}


def target_of(url: str) -> Target:
    """`url` parsed once per URL string, and checked: a target with a control character, a space
    or a non-ASCII character is refused rather than sent (it would split or change the request)."""
    target = _targets.get(url)
    if target is not None:
        return target
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise RefusedRequest("only http and https URLs with a host can be called")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if _BAD_TARGET.search(path) or _BAD_TARGET.search(parts.netloc):
        raise RefusedRequest("the URL holds a space, a control or a non-ASCII character")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise RefusedRequest("the URL's port is not a number") from exc
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    default = port == (443 if scheme == "https" else 80)
    target = Target((scheme, host, port), shown if default else f"{shown}:{port}", path)
    if len(_targets) >= _MAX_CACHED:
        _targets.clear()
    _targets[url] = target
    return target


def request_head(method: str, target: Target, headers: Any, body: bytes | None) -> bytes:
    """The request line and headers, framing headers written here and a caller's dropped."""
    if not _TOKEN.fullmatch(method):
        raise RefusedRequest("the method is not an HTTP token")
    if method == "HEAD":  # its answer's Content-Length frames no body, which the parser cannot be told
        raise RefusedRequest("HEAD requests are not supported by the upstream client")
    lines = [f"{method} {target.path} HTTP/1.1\r\nhost: {target.host_header}\r\n"]
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body) if body is not None else 0}\r\n")
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in _FRAMING:
            continue
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise RefusedRequest(f"header {name[:40]!r} holds a character HTTP does not allow there")
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError as exc:
        raise RefusedRequest("a header holds a character outside Latin-1") from exc


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time, its response parsed as it arrives."""

    def __init__(self, pool: Pool, origin: tuple[str, str, int]) -> None:
        self._pool = pool
        self.origin = origin
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.idle_since = 0.0
        self.closed = False
        self._reset()
        self._write_ready: asyncio.Future[None] | None = None

    def _reset(self) -> None:
        self.status = 0
        self.header_list: list[tuple[str, str]] = []
        self._head_size = 0
        self.head_done = False
        self.done = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self.got_bytes = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._decoder: Any = None
        self._decoder_raw_tried = False
        self._until_close = False
        self._read_timeout = 0.0
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        self._last_read = self._loop.time()
        if self.idle_since:  # an idle connection the upstream wrote to: it cannot be trusted again
            self._drop()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(TransportError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(TransportError(f"the upstream's answer is not valid HTTP/1.1 ({exc})"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self.done:
            return
        if self.head_done and self._until_close and exc is None:
            self._complete(keep_alive=False)
        else:
            self._fail(TransportError("the upstream closed the connection" + (f" ({exc})" if exc else "")))

    def pause_writing(self) -> None:
        if self._write_ready is None:
            self._write_ready = self._loop.create_future()

    def resume_writing(self) -> None:
        ready, self._write_ready = self._write_ready, None
        if ready is not None and not ready.done():
            ready.set_result(None)

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            # Bytes after a complete answer (in the same read or a later one) answer nothing that
            # was asked: the connection's framing can no longer be trusted. Raising stops the parser
            # here, so the surplus never joins the body; data_received then drops the connection.
            self.keep_alive = False
            raise TransportError("the upstream sent bytes after its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > _MAX_HEAD:
            raise TransportError("the upstream's response head is too large")
        self.header_list.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # interim (100 Continue, 103 Early Hints): the answer follows
            self.header_list = []
            self._head_size = 0
            return
        self.status = status
        self.head_done = True
        length = chunked = False
        for name, value in self.header_list:
            lowered = name.lower()
            if lowered == "content-length":
                length = True
            elif lowered == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif lowered == "content-encoding":
                encoding = value.strip().lower()
                if encoding == "gzip":
                    self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    self._decoder_raw_tried = True  # gzip has one framing only
                elif encoding == "deflate":
                    self._decoder = zlib.decompressobj(zlib.MAX_WBITS)
        self._until_close = not length and not chunked and status not in (204, 304)
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error:
                if self._decoder_raw_tried or self._buffered:
                    raise  # a parser callback's error: feed_data raises it, the exchange fails
                # Some servers send "deflate" without its zlib header (RFC 9110 8.4.1.2 warns of it).
                self._decoder_raw_tried = True
                self._decoder = zlib.decompressobj(-zlib.MAX_WBITS)
                body = self._decoder.decompress(body)
            if not body:
                return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _READ_HIGH and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if not self.head_done:
            return  # the end of an interim answer
        # Read now: the parser's keep-alive answer belongs to the message just parsed.
        self._complete(keep_alive=self._parser.should_keep_alive())

    # --- the exchange ----------------------------------------------------------------------------

    def _complete(self, keep_alive: bool) -> None:
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self._chunks.append(rest)
                self._buffered += len(rest)
        self.keep_alive = keep_alive and not self._until_close
        self.done = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if self.error is None and not self.done:
            self.error = error
        self._drop()
        self._wake()

    def _drop(self) -> None:
        self.closed = True
        self._pool.forget(self)
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def send(self, head: bytes, body: bytes | None, read_timeout: float) -> None:
        assert self.transport is not None
        self._read_timeout = read_timeout
        self._last_read = self._loop.time()
        if body and len(body) > 65536:
            self.transport.writelines((head, body))
        else:
            self.transport.write(head + body if body else head)
        if self._write_ready is not None:
            await self._write_ready
        if self.error is not None:
            raise self.error

    async def _wait(self) -> None:
        """Until the parser has more for the reader, or the read timeout passed since the last byte."""
        self._waiter = waiter = self._loop.create_future()
        if self._timer is None:
            self._timer = self._loop.call_at(self._last_read + self._read_timeout, self._on_timer)
        await waiter

    def _on_timer(self) -> None:
        # One timer per wait would be created and cancelled for every chunk of a stream; this one
        # moves itself forward while data keeps coming, and fires only on a real silence.
        self._timer = None
        if self._waiter is None or self.done or self.error is not None:
            return
        due = self._last_read + self._read_timeout
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._on_timer)
            return
        self._fail(ReadTimeout("the upstream sent nothing within the read timeout"))

    async def head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def next_chunk(self) -> bytes | None:
        """All the body buffered so far, in one piece; None once the body is complete."""
        while not self._chunks:
            if self.error is not None:
                raise self.error
            if self.done:
                return None
            await self._wait()
        chunks = self._chunks
        piece = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return piece

    def finish(self) -> None:
        """The exchange is over: the connection goes back to the pool if it can carry another."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.done and self.keep_alive and self.error is None and not self.closed and not self._chunks:
            self._reset()
            self._pool.put(self)
        else:
            self.abort()

    def abort(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closed:
            self._drop()


class Pool:
    """Idle keep-alive connections by origin, the most recently used first."""

    def __init__(self) -> None:
        # dicts as ordered sets: the last put is taken first, and a closed one is forgotten in O(1)
        self._idle: dict[tuple[str, str, int], dict[Connection, None]] = {}
        self._tls: ssl.SSLContext | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def idle_count(self) -> int:
        return sum(len(conns) for conns in self._idle.values())

    def take(self, origin: tuple[str, str, int]) -> Connection | None:
        conns = self._idle.get(origin)
        if not conns:
            return None
        deadline = asyncio.get_running_loop().time() - KEEPALIVE_S
        while conns:
            conn, _ = conns.popitem()
            if conn.closed or conn.idle_since < deadline:
                conn.abort()
                continue
            conn.idle_since = 0.0
            conn.reused = True
            return conn
        return None

    def put(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.setdefault(conn.origin, {})[conn] = None
        if self._sweeper is None:
            self._sweeper = loop.call_later(KEEPALIVE_S, self._sweep)

    def forget(self, conn: Connection) -> None:
        conns = self._idle.get(conn.origin)
        if conns:
            conns.pop(conn, None)

    def _sweep(self) -> None:
        self._sweeper = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() - KEEPALIVE_S
        for conns in self._idle.values():
            for conn in [c for c in conns if c.idle_since < deadline]:
                conn.abort()  # forgets itself
        if self.idle_count():
            self._sweeper = loop.call_later(KEEPALIVE_S, self._sweep)

    async def open(self, origin: tuple[str, str, int], connect_timeout: float) -> Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(self, origin), host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {host}:{port} within {connect_timeout:g} s") from None
        except OSError as exc:
            raise ConnectFailed(exc) from None
        return conn

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in list(self._idle.values()):
            for conn in list(conns):
                conn.abort()
        self._idle.clear()


async def exchange(
    pool: Pool,
    method: str,
    url: str,
    headers: Any,
    body: bytes | None,
    connect_timeout: float,
    read_timeout: float,
) -> Connection:
    """Sends one request and returns its connection once the response's head is in; the caller
    reads the body (`next_chunk`) and then calls `finish()` (or `abort()`). A reused connection
    the upstream had closed meanwhile is retried once on a new one for an idempotent method: a
    POST may have been acted on, so its failure is the caller's to judge."""
    target = target_of(url)
    head = request_head(method, target, headers, body)
    for attempt in (0, 1):
        conn = pool.take(target.origin)
        if conn is None:
            conn = await pool.open(target.origin, connect_timeout)
        try:
            await conn.send(head, body, read_timeout)
            await conn.head()
            return conn
        except TransportError:
            conn.abort()
            if attempt or not conn.reused or conn.got_bytes or method not in _IDEMPOTENT:
                raise
        except BaseException:
            conn.abort()
            raise
    raise AssertionError("unreachable")  # pragma: no cover
