"""What the gateway's own request path costs, in process, without sockets: CPU µs per request.

Builds the gateway exactly as ``sluice serve`` does (``build_services`` + ``SluiceASGI``, the benchmark's config and
variant), replaces only the upstream HTTP client with one that answers the fake upstream's precomputed bytes
(``bench/upstream.py``) without a socket, and drives the ASGI app directly with uvicorn-shaped scopes at
``--concurrency``. What is left is the request path itself: edge, engine, key lookup, routing, pricing, limits,
request log entry, providers; not uvicorn, not aiohttp. With ``--no-persist`` the store's request-log and ledger
inserts are no-ops (their cost belongs to the storage layer, measured by ``bench.proxy_overhead``).

Process CPU (every thread) and the event-loop thread's CPU per request, best of ``--repeat`` runs, after a warm-up.
The number is much steadier than the socket benchmark on a shared machine, so it shows small wins.

With ``--upstream http://127.0.0.1:PORT`` (a running ``python -m bench.upstream --port PORT``) the real upstream client
is used over a socket: the difference to a canned run is what the client and its socket cost in the gateway.

With ``--variant full`` it is all of governance as issue 14 defines it (``local`` plus the audit chain with signed
checkpoints). ``--profile PATH`` runs the measured rounds under cProfile, writes the stats to PATH (``pstats``,
``snakeviz``) and prints the functions with the most own time; the CPU figures of a profiled run are not the
unprofiled ones.

Run: ``python -m bench.request_path [--variant full] [--requests 5000] [--repeat 5] [--no-persist] [--profile PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from bench import harness, upstream
from sluice.app import build_services
from sluice.http.server import SluiceASGI
from sluice.settings import parse_config
from sluice.upstream.client import Timeouts, UpstreamClient


class _Response:
    def __init__(self, status: int, headers: CIMultiDictProxy[str], body: bytes, events: list[bytes]) -> None:
        self.status = status
        self.headers = headers
        self._body = body
        self._events = events

    async def read(self) -> bytes:
        return self._body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event

    def close(self) -> None:
        pass


class CannedClient(UpstreamClient):
    """The fake upstream's answers without a socket (JSON, or its SSE events one chunk each)."""

    def __init__(self, deltas: int) -> None:
        super().__init__()
        self._json = upstream.json_body(deltas)
        self._events = upstream.stream_events(deltas)
        self._json_headers = CIMultiDictProxy(CIMultiDict({"content-type": "application/json", "request-id": "r"}))
        self._sse_headers = CIMultiDictProxy(
            CIMultiDict({"content-type": "text/event-stream; charset=utf-8", "request-id": "r"})
        )

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def request(  # type: ignore[override]
        self, method: str, provider: str, url: str, headers: Mapping[str, str], body: bytes | None, timeouts: Timeouts
    ) -> _Response:
        assert body is not None and headers.get("x-api-key")
        if b'"stream":true' in body:
            return _Response(200, self._sse_headers, b"", self._events)
        return _Response(200, self._json_headers, self._json, [])


def scope_for(body: bytes) -> dict[str, Any]:
    headers = [(k.encode(), v.encode()) for k, v in harness.request_headers().items()]
    headers += [(b"host", b"127.0.0.1:8080"), (b"content-length", str(len(body)).encode()), (b"user-agent", b"bench")]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


async def one(app: SluiceASGI, body: bytes, expect: int) -> None:
    sent = 0
    status = 0
    first = True
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal sent, status
        if message["type"] == "http.response.start":
            status = message["status"]
        else:
            sent += len(message.get("body", b""))

    await app(scope_for(body), receive, send)
    if status != 200 or sent != expect:
        raise SystemExit(f"bad answer: status {status}, {sent} bytes (expected {expect})")


async def run(app: SluiceASGI, body: bytes, expect: int, requests: int, concurrency: int) -> None:
    left = requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await one(app, body, expect)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def idle(app: SluiceASGI) -> None:
    await app.services.recorder.flush()
    await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sluice-request-path-"))
    config = parse_config(harness.gateway_config(args.upstream or "http://127.0.0.1:9", tmp, args.variant))
    services = build_services(config, store_url=f"sqlite:///{tmp / 'bench.db'}")
    app = SluiceASGI(services)
    await services.start()
    if not args.upstream:
        client = CannedClient(args.deltas)
        for provider in services.engine.providers.values():  # as the live config built them at start
            provider._client = client  # type: ignore[attr-defined]
    if not args.persist:

        async def nothing(rows: Any) -> None:
            return None

        services.store.insert_requests = nothing  # type: ignore[method-assign]
        services.store.record_spend = nothing  # type: ignore[method-assign]
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    modes = {
        "json": (harness.request_body(False), len(upstream.json_body(args.deltas))),
        "stream": (harness.request_body(True), sum(map(len, upstream.stream_events(args.deltas)))),
    }
    profiler = cProfile.Profile() if args.profile else None
    try:
        for mode in args.modes.split(","):
            body, expect = modes[mode]
            await run(app, body, expect, args.warmup, args.concurrency)
            await idle(app)
            best_cpu = best_main = float("inf")
            for _ in range(args.repeat):
                cpu0, main0 = time.process_time(), time.thread_time()
                if profiler is not None:
                    profiler.enable()
                await run(app, body, expect, args.requests, args.concurrency)
                await idle(app)
                if profiler is not None:
                    profiler.disable()
                best_cpu = min(best_cpu, (time.process_time() - cpu0) / args.requests * 1e6)
                best_main = min(best_main, (time.thread_time() - main0) / args.requests * 1e6)
            print(f"{args.variant:6} {mode:6} cpu {best_cpu:7.1f} µs/req   event-loop thread {best_main:7.1f} µs/req")
    finally:
        await services.stop()
    if profiler is not None:
        profiler.dump_stats(args.profile)
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(30)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="local", choices=("plain", "local", "audited", "full"))
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--deltas", type=int, default=20)
    parser.add_argument("--modes", default="json,stream")
    parser.add_argument("--no-persist", dest="persist", action="store_false")
    parser.add_argument("--profile", metavar="PATH", help="write a cProfile of the measured rounds to PATH")
    parser.add_argument(
        "--upstream",
        help="a running bench.upstream (http://127.0.0.1:PORT): the real upstream client over a socket instead of "
        "the canned one, to see what the client costs (the difference of the two runs)",
    )
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(main(args))
    else:
        uvloop.run(main(args))


if __name__ == "__main__":
    cli()
