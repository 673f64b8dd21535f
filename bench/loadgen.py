"""Load generator: a long-lived process driven by JSON lines on stdin, answering JSON lines on stdout.

Each ``{"op": "run", ...}`` command sends a fixed number of requests (bounded by a deadline) through ``concurrency``
keep-alive connections of a fresh aiohttp ClientSession and answers the per-request latencies (and, for streams, the
time to the first body byte) in microseconds. With ``"rate": R`` the run is paced instead (open loop): request i is sent
at start + i/R whether or not earlier ones have finished, the way a low, steady load arrives; ``concurrency`` then only
caps the connections. Every answer is checked: status 200 and exactly the expected number of
body bytes, so a proxy that drops or alters bytes shows up as errors. ``{"op": "quit"}`` ends the process.

Keeping the process alive between runs means the orchestrator can read the proxy's CPU counters right before and right
after the load, with no interpreter start-up inside the window.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp
import orjson


async def run(cmd: dict[str, Any]) -> dict[str, Any]:
    url: str = cmd["url"]
    stream: bool = cmd["mode"] == "stream"
    body: bytes = cmd["body"].encode()
    method: str = cmd.get("method", "POST")  # GET: the edge alone (a health probe), no body
    headers: dict[str, str] = cmd["headers"]
    expected: int = cmd["expected_len"]
    total: int = cmd["requests"]
    concurrency: int = cmd["concurrency"]
    deadline = time.perf_counter() + float(cmd["timeout_s"])
    lat: list[int] = []
    ttfb: list[int] = []
    errors: list[str] = []
    issued = 0
    perf = time.perf_counter

    async def one(session: aiohttp.ClientSession) -> None:
        t0 = perf()
        async with session.request(method, url, data=body or None, headers=headers) as resp:
            if stream:
                first = await resp.content.readany()
                t1 = perf()
                size = len(first)
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
            else:
                size = len(await resp.read())
            t2 = perf()
            status = resp.status
        if status != 200 or size != expected:
            errors.append(f"status {status}, {size} bytes (expected {expected})")
            return
        lat.append(round((t2 - t0) * 1e6))
        if stream:
            ttfb.append(round((t1 - t0) * 1e6))

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal issued
        while issued < total and perf() < deadline:
            issued += 1
            try:
                await one(session)
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    async def paced(session: aiohttp.ClientSession, rate: float) -> None:
        nonlocal issued
        started = perf()
        inflight: set[asyncio.Task[None]] = set()
        for i in range(total):
            due = started + i / rate
            if due > deadline:
                break
            delay = due - perf()
            if delay > 0:
                await asyncio.sleep(delay)
            issued += 1
            task = asyncio.create_task(guarded(session))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        if inflight:
            await asyncio.gather(*inflight)

    async def guarded(session: aiohttp.ClientSession) -> None:
        try:
            await one(session)
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    rate = float(cmd.get("rate") or 0)
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, skip_auto_headers=("User-Agent",)
    ) as session:
        started = perf()
        if rate > 0:
            await paced(session, rate)
        else:
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = perf() - started
    return {
        "ok": len(lat),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "issued": issued,
        "timed_out": issued < total,
        "elapsed_s": elapsed,
        "lat_us": lat,
        "ttfb_us": ttfb,
    }


async def main() -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        cmd = orjson.loads(line)
        if cmd.get("op") == "quit":
            return
        try:
            result = await run(cmd)
        except Exception as exc:  # report, never die silently: the orchestrator is waiting for a line
            result = {"fatal": f"{type(exc).__name__}: {exc}"}
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
        sys.stdout.buffer.flush()


if __name__ == "__main__":
    import uvloop

    from sluice.upstream.fds import raise_open_files_limit

    raise_open_files_limit()  # one socket per connection: the default soft limit of 1,024 is soon reached
    uvloop.run(main())
