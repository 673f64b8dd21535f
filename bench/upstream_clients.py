"""Upstream HTTP clients side by side: CPU per request and time to first byte, in one run.

``python -m bench.upstream_clients`` starts the fast fake upstream (``bench/upstream.py``) and, per client variant, a
worker process (uvloop) that sends ``--requests`` requests through ``--concurrency`` keep-alive connections, JSON and
stream, reading every answer to its end and checking its length. Reported per variant: the worker's CPU µs per
request (user+system, every thread: pyreqwest runs a Rust runtime thread), the ratio to ``aiohttp`` (today's
``sluice.upstream.client`` settings), p50 latency and, for streams, p50 time to the first body chunk. The variants run
in an order rotated every round; figures are medians over ``--rounds``.

Variants:
- ``aiohttp``: as ``UpstreamClient`` is today (connector without a cap, no User-Agent, trust_env off).
- ``aiohttp+nodecomp``: also ``auto_decompress=False``; ``+nojar`` also a ``DummyCookieJar``; ``+bufsize``
  also ``read_bufsize=256 KiB``; ``+all`` all three (tcp_nodelay is on by default in aiohttp).
- ``pyreqwest``: the Rust reqwest client (one ``Client``, ``build_streamed`` for streams, no gzip, no cookies); not a
  dependency of Sluice: ``.venv/bin/pip install pyreqwest`` first, or the variant is left out.
- ``httptools``: a raw asyncio protocol with httptools' response parser and a keep-alive pool: the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

VARIANTS = (
    "aiohttp",
    "aiohttp+nodecomp",
    "aiohttp+nojar",
    "aiohttp+bufsize",
    "aiohttp+all",
    "pyreqwest",
    "httptools",
)


# --------------------------------------------------------------------------------------------------------------------
# Clients: each is `async send(url, headers, body, stream) -> (status, ttfb_s, size)` plus `close()`
# --------------------------------------------------------------------------------------------------------------------


class AiohttpClient:
    def __init__(self, variant: str) -> None:
        import aiohttp

        extra: dict[str, Any] = {}
        if variant in ("aiohttp+nodecomp", "aiohttp+all"):
            extra["auto_decompress"] = False
        if variant in ("aiohttp+nojar", "aiohttp+all"):
            extra["cookie_jar"] = aiohttp.DummyCookieJar()
        if variant in ("aiohttp+bufsize", "aiohttp+all"):
            extra["read_bufsize"] = 256 * 1024
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector, skip_auto_headers=("User-Agent",), trust_env=False, **extra
        )
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)

    async def send(self, url: Any, headers: dict[str, str], body: bytes, stream: bool) -> tuple[int, float, int]:
        t0 = time.perf_counter()
        resp = await self.session.request("POST", url, data=body, headers=headers, timeout=self.timeout)
        try:
            ttfb = 0.0
            size = 0
            async for chunk in resp.content.iter_any():
                if not size:
                    ttfb = time.perf_counter() - t0
                size += len(chunk)
            return resp.status, ttfb, size
        finally:
            resp.release()

    async def close(self) -> None:
        await self.session.close()


class PyreqwestClient:
    def __init__(self) -> None:
        from datetime import timedelta

        from pyreqwest.client import ClientBuilder

        self.client = (
            ClientBuilder()
            .connect_timeout(timedelta(seconds=10))
            .read_timeout(timedelta(seconds=300))
            .gzip(False)
            .default_cookie_store(False)
            .follow_redirects(False)
            .http1_only()
            .build()
        )

    async def send(self, url: Any, headers: dict[str, str], body: bytes, stream: bool) -> tuple[int, float, int]:
        t0 = time.perf_counter()
        req = self.client.post(url).headers(headers).body_bytes(body).build_streamed()
        async with req as resp:
            reader = resp.body_reader
            ttfb = 0.0
            size = 0
            while (chunk := await reader.read_chunk()) is not None:
                if not size:
                    ttfb = time.perf_counter() - t0
                size += len(chunk)
            return resp.status, ttfb, size

    async def close(self) -> None:
        await self.client.close()


class _HttptoolsConn(asyncio.Protocol):
    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None
        self.done = False
        self.status = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        self.done = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class HttptoolsClient:
    """HTTP/1.1 keep-alive pool on a raw protocol: what a client costs when it does nothing else."""

    def __init__(self) -> None:
        self.idle: list[_HttptoolsConn] = []

    async def send(self, url: Any, headers: dict[str, str], body: bytes, stream: bool) -> tuple[int, float, int]:
        host, port, path = url
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        if self.idle:
            conn = self.idle.pop()
        else:
            _, conn = await loop.create_connection(_HttptoolsConn, host, port)
        head = [f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {len(body)}\r\n"]
        head += [f"{k}: {v}\r\n" for k, v in headers.items()]
        assert conn.transport is not None
        conn.transport.write("".join(head).encode() + b"\r\n" + body)
        size = 0
        ttfb = 0.0
        while True:
            while conn.chunks:
                if not size:
                    ttfb = time.perf_counter() - t0
                size += len(conn.chunks.popleft())
            if conn.done:
                break
            conn.waiter = loop.create_future()
            await conn.waiter
        status = conn.status
        conn.done, conn.waiter = False, None
        self.idle.append(conn)
        return status, ttfb, size

    async def close(self) -> None:
        for conn in self.idle:
            if conn.transport is not None:
                conn.transport.close()


# --------------------------------------------------------------------------------------------------------------------
# Worker: one variant, one mode, one run
# --------------------------------------------------------------------------------------------------------------------


async def work(cmd: dict[str, Any]) -> dict[str, Any]:
    from yarl import URL

    variant, port, stream = cmd["variant"], int(cmd["port"]), bool(cmd["stream"])
    body, headers, expected = cmd["body"].encode(), cmd["headers"], int(cmd["expected"])
    url: Any
    if variant.startswith("aiohttp"):
        client: Any = AiohttpClient(variant)
        url = URL(f"http://127.0.0.1:{port}/v1/messages", encoded=True)
    elif variant == "pyreqwest":
        client = PyreqwestClient()
        url = f"http://127.0.0.1:{port}/v1/messages"
    else:
        client = HttptoolsClient()
        url = ("127.0.0.1", port, "/v1/messages")
    lat: list[float] = []
    ttfb: list[float] = []
    errors = 0
    left = int(cmd["warmup"])

    async def worker(count: list[int], record: bool) -> None:
        nonlocal errors
        while count[0] > 0:
            count[0] -= 1
            t0 = time.perf_counter()
            status, first, size = await client.send(url, headers, body, stream)
            if status != 200 or size != expected:
                errors += 1
            elif record:
                lat.append(time.perf_counter() - t0)
                ttfb.append(first)

    concurrency = int(cmd["concurrency"])
    await asyncio.gather(*(worker([left // concurrency], False) for _ in range(concurrency)))
    cpu0, t0 = time.process_time(), time.perf_counter()
    per = int(cmd["requests"]) // concurrency
    await asyncio.gather(*(worker([per], True) for _ in range(concurrency)))
    cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
    await client.close()
    done = per * concurrency
    return {
        "cpu_us": cpu / done * 1e6,
        "rps": done / elapsed,
        "p50_ms": statistics.median(lat) * 1e3 if lat else None,
        "ttfb_p50_ms": statistics.median(ttfb) * 1e3 if ttfb else None,
        "errors": errors,
    }


# --------------------------------------------------------------------------------------------------------------------
# Orchestrator
# --------------------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench import harness, upstream

    cores = harness.plan_cores(not args.no_pin)
    variants = args.variants.split(",")
    if "pyreqwest" in variants and importlib.util.find_spec("pyreqwest") is None:
        print("pyreqwest is not installed (.venv/bin/pip install pyreqwest): left out", file=sys.stderr)
        variants.remove("pyreqwest")
    modes = args.modes.split(",")
    samples: dict[tuple[str, str], list[dict[str, Any]]] = {(v, m): [] for v in variants for m in modes}
    with tempfile.TemporaryDirectory(prefix="sluice-clients-") as tmp:
        fleet = harness.Fleet(Path(tmp))
        try:
            port = harness.free_port()
            harness.start_upstream(fleet, port, args.deltas, cores["upstream"])
            expected = {
                "json": len(upstream.json_body(args.deltas)),
                "stream": len(b"".join(upstream.stream_events(args.deltas))),
            }
            for rnd in range(args.rounds):
                order = variants[rnd % len(variants) :] + variants[: rnd % len(variants)]
                for mode in modes:
                    for variant in order:
                        cmd = {
                            "variant": variant,
                            "port": port,
                            "stream": mode == "stream",
                            "body": harness.request_body(mode == "stream").decode(),
                            "headers": harness.request_headers(),
                            "expected": expected[mode],
                            "requests": args.requests,
                            "concurrency": args.concurrency,
                            "warmup": args.warmup,
                        }
                        proc = fleet.start(
                            f"{variant}-{mode}-{rnd}",
                            [sys.executable, "-m", "bench.upstream_clients", "--worker"],
                            cores=cores["proxy"],
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                        )
                        out, _ = proc.popen.communicate(orjson.dumps(cmd) + b"\n", timeout=args.run_timeout)
                        if not out:
                            raise RuntimeError(f"{variant} {mode} failed:\n{proc.log_tail()}")
                        samples[(variant, mode)].append(orjson.loads(out))
        finally:
            fleet.close()
    summary: dict[str, Any] = {"args": vars(args) | {"out": str(args.out)}, "results": {}}
    for (variant, mode), rows in samples.items():
        summary["results"].setdefault(mode, {})[variant] = {
            key: statistics.median([r[key] for r in rows if r[key] is not None] or [0])
            for key in ("cpu_us", "rps", "p50_ms", "ttfb_p50_ms")
        } | {"errors": sum(r["errors"] for r in rows), "cpu_us_all": [round(r["cpu_us"], 1) for r in rows]}
    return summary


def report(summary: dict[str, Any]) -> str:
    a = summary["args"]
    lines = [
        f"# Upstream clients: {a['requests']} requests x {a['rounds']} rounds, concurrency {a['concurrency']}, "
        f"{a['deltas']} deltas per stream (medians; the client pinned to its own core)",
    ]
    for mode, rows in summary["results"].items():
        base = rows.get("aiohttp", {}).get("cpu_us") or 1.0
        lines += [
            "",
            f"## {mode}",
            "",
            "| client | CPU µs/req | × aiohttp | per round | req/s | p50 ms | TTFB p50 ms | errors |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for variant, r in rows.items():
            ttfb = f"{r['ttfb_p50_ms']:.3f}" if mode == "stream" else "-"
            lines.append(
                f"| {variant} | {r['cpu_us']:.1f} | {r['cpu_us'] / base:.2f} | {r['cpu_us_all']} | {r['rps']:.0f} "
                f"| {r['p50_ms']:.3f} | {ttfb} | {r['errors']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--modes", default="json,stream")
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deltas", type=int, default=20)
    parser.add_argument("--run-timeout", type=float, default=120)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    import uvloop

    if args.worker:
        cmd = orjson.loads(sys.stdin.buffer.readline())
        sys.stdout.buffer.write(orjson.dumps(uvloop.run(work(cmd))) + b"\n")
        return
    summary = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "upstream_clients.json").write_text(json.dumps(summary, indent=1))
    text = report(summary)
    (args.out / "upstream_clients.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
