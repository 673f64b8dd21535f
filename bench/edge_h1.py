"""A candidate that was measured and not kept: a lean HTTP/1.1 server for Sluice's own ASGI app,
httptools (llhttp) parsing in an asyncio Protocol per connection, one task per request, nothing
else on the hot path. bench/edge_servers.py runs the gateway under it beside uvicorn and granian;
it saved a few µs per request at the edge (GET /healthz), within the noise of a full request, so
`sluice serve` keeps uvicorn (see bench/results/edge_servers.md). Kept here so the comparison
can be re-run; not a supported server.

It serves only our app, so it implements only what that app and HTTP/1.1 need: keep-alive,
Content-Length and chunked bodies both ways, `Expect: 100-continue`, pipelined requests answered
in order, bounded request heads, idle and header timeouts (slowloris), `http.disconnect` when the
client goes away, and the ASGI lifespan. Request smuggling (Content-Length with Transfer-Encoding,
two different Content-Lengths, obs-fold, bare LF) is refused by llhttp's strict mode.
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, cast

import httptools

from sluice.core.tasks import spawn
from sluice.http.asgi import Message, Receive, Scope, Send

log = logging.getLogger("sluice.http.h1")
App = Callable[[Scope, Receive, Send], Any]

_READ_HIGH_WATER = 256 * 1024  # request body bytes buffered before reading pauses


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {code} {phrase}\r\n".encode("latin-1")


_STATUS = {code: _status_line(code) for code in range(100, 600)}


@dataclass(frozen=True)
class H1Limits:
    # A request head larger than this is refused with 431 before it is parsed to the end (the
    # app's own, smaller limits answer first with its JSON 431: this one bounds memory).
    max_head_bytes: int = 256 * 1024
    max_body_bytes: int = 64 * 1024 * 1024  # above the app's own limit: a hard stop for every route
    keepalive_s: float = 5.0  # an idle connection between requests is closed after this
    head_s: float = 10.0  # a request head must arrive whole within this (slowloris)
    body_idle_s: float = 30.0  # while the app waits for body bytes, at most this between two


class _Date:
    """The Date header (RFC 9110 6.6.1), formatted once per second."""

    def __init__(self) -> None:
        self.at = 0
        self.value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self.at:
            self.at = now
            self.value = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self.value


class H1Server:
    """What the connections of one listening server share: the app, the limits, the live
    connections (for the drain) and the count of requests in progress."""

    def __init__(self, app: App, limits: H1Limits | None = None) -> None:
        self.app = app
        self.limits = limits or H1Limits()
        self.connections: set[H1Protocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()  # requests still running (their app code may outlive the answer)
        self.date = _Date()
        self.draining = False
        self.idle = asyncio.Event()
        self.idle.set()

    def protocol(self) -> H1Protocol:
        return H1Protocol(self)

    def drain(self) -> None:
        """Stop keeping connections alive: idle ones close now, busy ones after their answer."""
        self.draining = True
        for conn in list(self.connections):
            conn.close_when_idle()

    def abort(self) -> None:
        """The grace period is over: close every connection (their requests see a disconnect)."""
        for conn in list(self.connections):
            conn.transport_close()

    def sweep(self) -> None:
        """Closes the connections whose deadline passed (idle keep-alive, slow request heads)."""
        now = asyncio.get_running_loop().time()
        for conn in [c for c in self.connections if 0.0 < c.deadline < now]:
            conn.timed_out()

    async def sweeper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.sweep()

    def forget(self, conn: H1Protocol) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self.idle.set()


class H1Protocol(asyncio.Protocol):
    def __init__(self, server: H1Server) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.cycle: Cycle | None = None  # the request being answered
        self.pipeline: deque[Cycle] = deque()  # requests parsed while another was being answered
        self.parsing: Cycle | None = None  # the request whose body the parser is reading
        self.in_head = False
        self.head_bytes = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.deadline = 0.0  # loop time after which the sweeper closes the connection (0: none)
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.reading_paused = False

    # Connection events ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        sock = transport.get_extra_info("sockname")
        self.local = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        self.server.connections.add(self)
        self.server.idle.clear()
        if self.server.draining:  # accepted just before the listener closed
            transport.close()
            return
        self._arm(self.limits.keepalive_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        for cycle in (self.cycle, *self.pipeline):
            if cycle is not None:
                cycle.gone()
        self.pipeline.clear()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)
        self.server.forget(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    async def wait_writable(self) -> None:
        if self.drained is None or self.drained.done():
            self.drained = self.loop.create_future()
        await self.drained

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, b"Protocol upgrades are not supported.")
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, b"Invalid HTTP request: " + str(exc).encode("latin-1", "replace")[:200])
            return
        if self.in_head and self.head_bytes > self.limits.max_head_bytes:
            self._refuse(431, b"The request head is too large.")

    def eof_received(self) -> bool | None:
        return None  # close our side too: a half-closed client cannot read a keep-alive answer

    # Parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        self.url = b""
        self.headers = []
        self._arm(self.limits.head_s)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        self._disarm()
        parser = self.parser
        version = parser.get_http_version()
        parsed = httptools.parse_url(self.url)
        raw_path: bytes = parsed.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": parser.get_method().decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self.headers,
        }
        expect = any(n == b"expect" and v.lower() == b"100-continue" for n, v in self.headers)
        keep_alive = parser.should_keep_alive() and not self.server.draining
        cycle = Cycle(self, scope, keep_alive, expect)
        self.parsing = cycle
        if self.cycle is None:
            self._start(cycle)
        else:  # pipelined: answered in order, after the one in progress; stop reading meanwhile
            self.pipeline.append(cycle)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None or cycle.complete or cycle.disconnected:
            return
        cycle.received += len(body)
        if cycle.received > self.limits.max_body_bytes:
            self._refuse(413, b"The request body is too large.")
            return
        cycle.body.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > _READ_HIGH_WATER:
            self._pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        cycle = self.parsing
        self.parsing = None
        if cycle is not None:
            cycle.more_body = False
            cycle.wake()

    # Requests ---------------------------------------------------------------------------------

    def _start(self, cycle: Cycle) -> None:
        self.cycle = cycle
        # Not core.tasks.spawn: a request task is the server's own, held in server.tasks, and
        # Cycle.run logs what it raises.
        task = cycle.task = self.loop.create_task(cycle.run(self.server.app))
        tasks = self.server.tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def response_done(self, cycle: Cycle) -> None:
        """The last byte of `cycle`'s answer is written: close, or serve the next request."""
        self.cycle = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not cycle.keep_alive or (self.server.draining and not self.pipeline):
            transport.close()
            return
        if cycle.more_body and not cycle.disconnected:
            # The app answered without reading the whole body; the parser skips the rest, but a
            # client that keeps sending it would hold the connection: close instead.
            transport.close()
            return
        if self.pipeline:
            self._start(self.pipeline.popleft())
            if not self.pipeline:
                self._resume_reading()
        else:
            self._resume_reading()
            self._arm(self.limits.keepalive_s)

    def close_when_idle(self) -> None:
        if self.cycle is None and not self.pipeline:
            self.transport_close()
        elif self.cycle is not None:
            self.cycle.keep_alive = False
            for waiting in self.pipeline:
                waiting.keep_alive = False

    def transport_close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, message: bytes) -> None:
        """A protocol-level refusal: answer (when no answer is under way) and close."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.cycle is None or not self.cycle.started:
            transport.write(
                _STATUS[status]
                + self.server.date()
                + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: "
                + str(len(message)).encode()
                + b"\r\n\r\n"
                + message
            )
        transport.close()

    # Timers and flow control ------------------------------------------------------------------

    # One sweep a second over every connection (H1Server.sweep) instead of a timer per request:
    # arming is an attribute write.
    def _arm(self, seconds: float) -> None:
        self.deadline = self.loop.time() + seconds

    def _disarm(self) -> None:
        self.deadline = 0.0

    def timed_out(self) -> None:
        self.deadline = 0.0
        if self.in_head:
            self._refuse(408, b"The request head did not arrive in time.")
        else:
            self.transport_close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.pipeline:
            self.reading_paused = False
            self.transport.resume_reading()


class Cycle:
    """One request and its answer: the ASGI `receive` and `send` of that request."""

    __slots__ = (
        "body",
        "buffered",
        "chunked",
        "complete",
        "conn",
        "disconnected",
        "end_told",
        "expect_continue",
        "head",
        "keep_alive",
        "more_body",
        "received",
        "remaining",
        "scope",
        "started",
        "status",
        "task",
        "waiter",
    )

    def __init__(self, conn: H1Protocol, scope: Scope, keep_alive: bool, expect_continue: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.more_body = True
        self.end_told = False  # the last body message (more_body False) was handed to the app
        self.status = 0
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.started = False  # the status line and headers are decided (written with the first body bytes)
        self.complete = False  # the last byte of the answer is written
        self.head = b""
        self.chunked = False
        self.remaining: int | None = None  # body bytes still owed under a Content-Length
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def gone(self) -> None:
        self.disconnected = True
        self.wake()

    async def run(self, app: App) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.error("exception in the ASGI app", exc_info=exc)
            if not self.started and not self.disconnected:
                self.keep_alive = False
                await self.send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await self.send({"type": "http.response.body", "body": b"Internal Server Error"})
            elif not self.complete:
                self.conn.transport_close()
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
        else:
            if not self.complete and not self.disconnected:
                log.error("the ASGI app returned without completing its answer")
                if not self.started:
                    self.keep_alive = False
                    await self.send({"type": "http.response.start", "status": 500, "headers": []})
                    await self.send({"type": "http.response.body", "body": b""})
                else:
                    self.conn.transport_close()

    # receive ----------------------------------------------------------------------------------

    async def receive(self) -> Message:
        conn = self.conn
        if self.expect_continue:
            # The client waits for this before it sends the body: only once the app asks for it.
            self.expect_continue = False
            if self.more_body and not self.started and conn.transport is not None:
                conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.body and self.more_body and not self.disconnected and not self.complete:
            conn._resume_reading()
            self.waiter = conn.loop.create_future()
            timer = conn.loop.call_later(conn.limits.body_idle_s, conn.transport_close)
            try:
                await self.waiter
            finally:
                timer.cancel()
                self.waiter = None
        if self.disconnected or self.complete:
            return {"type": "http.disconnect"}
        if self.body or not self.end_told:
            chunk = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self.body.clear()
            self.buffered = 0
            self.end_told = not self.more_body
            conn._resume_reading()
            return {"type": "http.request", "body": chunk, "more_body": self.more_body}
        # The whole body was handed over: from now on receive() waits for the end of the
        # exchange (the disconnect watcher of a stream waits here).
        while not self.disconnected and not self.complete:
            self.waiter = conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return {"type": "http.disconnect"}

    # send -------------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        conn = self.conn
        if self.disconnected or conn.transport is None:
            return
        if conn.write_paused:
            await conn.wait_writable()
            if self.disconnected:
                return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind}")
            self._begin(message)
            return
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {kind}")
        if self.complete:
            raise RuntimeError("the answer is complete already")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        head = self.head
        if head:  # the first body message: write the head with it, in one write
            self.head = b""
            if self.remaining is None and not self.chunked and self._has_body():
                if more:
                    self.chunked = True
                    head += b"transfer-encoding: chunked\r\n"
                else:
                    self.remaining = len(body)
                    head += b"content-length: " + str(len(body)).encode() + b"\r\n"
            head += b"\r\n"
        if not self._has_body():
            body = b""
            self.remaining = 0
        if self.chunked:
            if body:
                out = b"%x\r\n%b\r\n" % (len(body), body)
                if not more:
                    out += b"0\r\n\r\n"
            else:
                out = b"" if more else b"0\r\n\r\n"
        else:
            if self.remaining is not None:
                self.remaining -= len(body)
                if self.remaining < 0:
                    raise RuntimeError("the answer is longer than its Content-Length")
            out = body
        data = head + out if head else out
        if data:
            conn.transport.write(data)
        if not more:
            if self.remaining:
                conn.transport_close()  # shorter than announced: the client must not wait for the rest
                raise RuntimeError("the answer is shorter than its Content-Length")
            self.complete = True
            self.wake()
            conn.response_done(self)

    def _has_body(self) -> bool:
        status = self.status
        return self.scope["method"] != "HEAD" and status >= 200 and status not in (204, 304)

    def _begin(self, message: Message) -> None:
        status = int(message["status"])
        self.status = status
        self.started = True
        self.expect_continue = False
        parts = [_STATUS.get(status) or _status_line(status), self.conn.server.date()]
        count = 2
        for name, value in message.get("headers", ()):
            lname = name.lower()
            if lname == b"content-length":
                self.remaining = int(value)
            elif lname == b"transfer-encoding":
                if value.lower() != b"chunked":
                    raise RuntimeError("only chunked transfer-encoding is supported")
                self.chunked = True
                self.remaining = None
            elif lname == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            elif lname == b"date":
                continue
            parts.append(lname + b": " + value + b"\r\n")
            count += 1
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
            count += 1
        head = b"".join(parts)
        # Response splitting: a CR, LF or NUL inside a name or value would add lines of its own.
        if head.count(b"\n") != count or head.count(b"\r") != count or b"\x00" in head:
            raise RuntimeError("invalid character in a response header")
        self.head = head


class Lifespan:
    """The ASGI lifespan protocol, driven from the server: startup before the first connection is
    accepted, shutdown after the last one is closed."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.outbox: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> Message:
        return await self.inbox.get()

    async def _send(self, message: Message) -> None:
        await self.outbox.put(message)

    async def _run(self) -> None:
        try:
            await self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, self._receive, self._send)
        except Exception as exc:
            log.exception("lifespan failed")
            await self.outbox.put({"type": "lifespan.startup.failed", "message": str(exc)})

    async def startup(self) -> None:
        self.task = spawn(self._run(), name="lifespan")
        await self.inbox.put({"type": "lifespan.startup"})
        answer = await self.outbox.get()
        if answer["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"application start-up failed: {answer.get('message', answer['type'])}")

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        answer = await self.outbox.get()
        if answer["type"] != "lifespan.shutdown.complete":
            log.error("application shutdown failed: %s", answer.get("message", answer["type"]))
        if self.task is not None:
            await self.task


async def serve(
    app: App,
    sock: Any,
    stop: asyncio.Event,
    *,
    drain_s: float,
    limits: H1Limits | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve `app` on the listening socket `sock` until `stop` is set, then drain: stop accepting,
    close idle connections, let requests in progress finish for up to `drain_s` seconds, close the
    rest, and run the lifespan shutdown (which settles and flushes)."""
    loop = asyncio.get_running_loop()
    lifespan = Lifespan(app)
    await lifespan.startup()
    server = H1Server(app, limits)
    listener = await loop.create_server(server.protocol, sock=sock, backlog=2048)
    sweeper = spawn(server.sweeper(), name="h1-sweeper")
    if on_ready is not None:
        on_ready()
    await stop.wait()
    listener.close()  # no new connection from here on
    server.drain()
    deadline = loop.time() + drain_s
    try:
        await asyncio.wait_for(server.idle.wait(), timeout=drain_s)
    except TimeoutError:
        log.warning("drain: %d request(s) still running after %.0f s, closing them", len(server.tasks), drain_s)
        server.abort()
    # A request's own work may outlive its answer (it settles and records after the last byte).
    if server.tasks:
        await asyncio.wait(set(server.tasks), timeout=max(deadline - loop.time(), 5.0))
    sweeper.cancel()
    await lifespan.shutdown()
