"""How `sluice serve` runs the app: uvicorn (httptools, on the caller's uvloop) on a socket bound
here, until `stop` is set; then a drain.

uvicorn was measured against granian and an in-house httptools protocol with the same app
(bench/edge_servers.py, bench/results/edge_servers.md): granian used about 40 % more CPU per
request at the edge, the in-house protocol saved a few µs, within the noise of a full request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import uvicorn

from sluice.core.tasks import spawn

log = logging.getLogger("sluice.serve")
Ready = Callable[[], None]


class Runner(Protocol):
    def __call__(
        self, app: Any, sock: socket.socket, stop: asyncio.Event, *, drain_s: float, log_level: str, on_ready: Ready
    ) -> Awaitable[None]: ...


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound TCP socket; with `reuse_port`, several processes bind the same port and the kernel
    spreads new connections over them (SO_REUSEPORT). It does not listen yet: the server listens
    once the app has started, so no connection waits in the backlog of a process that is still
    starting (the kernel would route some there while the other workers serve)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def run_uvicorn(
    app: Any, sock: socket.socket, stop: asyncio.Event, *, drain_s: float, log_level: str, on_ready: Ready
) -> None:
    """Serves until `stop` is set, then drains: uvicorn closes the listener (new connections are
    refused), closes idle keep-alive connections, waits up to `drain_s` for the requests in
    flight (streams) and cancels what is left, then runs the lifespan shutdown, which settles
    and flushes the request log, the spend ledger and the audit log."""
    config = uvicorn.Config(
        app,
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level.lower(),
        server_header=False,
        # uvicorn's 2048 overflowed at a ramp of thousands of streams (connections reset, bench/streams.py)
        backlog=8192,
        # uvicorn's own limit is a backstop: at drain_s, _cut cancels what is left and waits for it.
        timeout_graceful_shutdown=round(drain_s) + 30,
    )
    server = uvicorn.Server(config)
    # Not server.serve(): it installs its own signal handlers and re-raises the signal after the
    # graceful shutdown, so a drained process would die of SIGTERM (143) instead of exiting 0.
    # The caller owns the signals; they set `stop`.
    serving = spawn(server._serve(sockets=[sock]), name="uvicorn")
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes no event
        await asyncio.sleep(0.02)
    if server.started:
        on_ready()
        stopping = spawn(stop.wait(), name="drain-signal")
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        server.should_exit = True
        cutting = spawn(_cut(server, drain_s), name="drain-cut")
        try:
            await serving
        finally:
            cutting.cancel()
    else:
        await serving
    if not server.started:
        raise SystemExit(3)  # the lifespan start-up failed (uvicorn logged why)


async def _cut(server: uvicorn.Server, drain_s: float) -> None:
    """At the end of the grace period, cancels the requests still running and waits for them to
    finish their own work (a cancelled stream still records its request-log row and settles):
    uvicorn, left to its own timeout, would cancel them and start the lifespan shutdown (which
    stops the request log and the ledger writer) without waiting."""
    await asyncio.sleep(drain_s)
    tasks = set(server.server_state.tasks)
    if not tasks:
        return
    log.warning("drain: %d request(s) still running after %.0f s, cutting them", len(tasks), drain_s)
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=10)
