"""Many concurrent open streams through one `sluice serve` process: errors, peak concurrency, RSS per stream.

``python -m bench.streams --streams 1000,4000,10000 --seconds 10`` starts a paced fake Anthropic upstream (each stream's
events spread over ``--seconds``), the gateway exactly as an operator runs it (``bench.harness``'s ``plain`` config:
a virtual key with no limits, request log on), and a client process that opens N streams at
``--rate`` new streams per second and reads each to its end. Per N it reports the errors (any status other than 200,
a body other than the upstream's exact bytes, a transport error), the peak number of streams open at once (first
byte received, last byte not yet), the gateway's RSS (idle before the run, peak, after), RSS per open stream
((peak - idle) / peak open), its open file descriptors at the peak, its CPU seconds, and what /metrics counted as
``gateway_saturated``. With ``--direct`` the same client first runs against the upstream alone, as the control.

Subcommands run the helper processes: ``python -m bench.streams upstream --port P --seconds S`` and
``python -m bench.streams client`` (one JSON command on stdin, one JSON result on stdout).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------------------------------------
# The paced upstream
# --------------------------------------------------------------------------------------------------------------------


async def serve_upstream(port: int, seconds: float, deltas: int) -> None:
    from aiohttp import web

    from bench.upstream import json_body, stream_events

    events, whole = stream_events(deltas), json_body(deltas)
    pause = seconds / max(1, len(events) - 1)
    sse = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}

    async def messages(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if not request.headers.get("x-api-key"):
            return web.Response(status=401)
        if orjson.loads(raw).get("stream") is not True:  # the warm-up: answered at once
            return web.Response(body=whole, content_type="application/json")
        resp = web.StreamResponse(headers=sse)
        await resp.prepare(request)
        for i, event in enumerate(events):
            if i:
                await asyncio.sleep(pause)
            await resp.write(event)
        await resp.write_eof()
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.Response(text='{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


# --------------------------------------------------------------------------------------------------------------------
# The client: N streams, opened at a steady rate, each read to its end
# --------------------------------------------------------------------------------------------------------------------


async def run_client(cmd: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    n, rate, url = int(cmd["streams"]), float(cmd["rate"]), str(cmd["url"])
    body, headers, expected = cmd["body"].encode(), cmd["headers"], int(cmd["expected_len"])
    open_now = peak = 0
    ttfb: list[float] = []
    errors: dict[str, int] = {}
    ok = 0
    perf = time.perf_counter

    def error(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal open_now, peak, ok
        t0 = perf()
        opened = False
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                first = await resp.content.readany()
                ttfb.append(perf() - t0)
                opened = True
                open_now += 1
                peak = max(peak, open_now)
                size = len(first)
                tail = first[-64:]
                async for chunk in resp.content.iter_any():
                    size += len(chunk)
                    tail = (tail + chunk)[-64:]
                if resp.status != 200:
                    error(f"status {resp.status}: {first[:160]!r}")
                elif size != expected or b"message_stop" not in tail:
                    error(f"status 200 but {size} bytes (expected {expected})")
                else:
                    ok += 1
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error(f"{type(exc).__name__}: {str(exc)[:120]}")
        finally:
            if opened:
                open_now -= 1

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=120, sock_read=120)
    started = perf()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, skip_auto_headers=("User-Agent",)) as s:
        tasks = []
        for i in range(n):
            due = started + i / rate
            if (wait := due - perf()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(s)))
        await asyncio.gather(*tasks)
    ttfb.sort()
    return {
        "ok": ok,
        "errors": sum(errors.values()),
        "error_kinds": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:8]),
        "peak_open": peak,
        "elapsed_s": perf() - started,
        "ttfb_p50_ms": ttfb[len(ttfb) // 2] * 1e3 if ttfb else None,
        "ttfb_p99_ms": ttfb[int(len(ttfb) * 0.99)] * 1e3 if ttfb else None,
    }


# --------------------------------------------------------------------------------------------------------------------
# The orchestrator
# --------------------------------------------------------------------------------------------------------------------


def _client(fleet: Any, name: str, cmd: dict[str, Any]) -> subprocess.Popen[bytes]:
    proc = fleet.start(
        name,
        [sys.executable, "-m", "bench.streams", "client"],
        cores=None,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.popen.stdin is not None
    proc.popen.stdin.write(orjson.dumps(cmd) + b"\n")
    proc.popen.stdin.close()
    return proc


def _saturated(port: int) -> str:
    """`sluice_gateway_saturated_total` by reason, e.g. "pool 3, loop 12" ("0" when none)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    found = re.findall(r'^sluice_gateway_saturated_total\{[^}]*reason="(\w+)"\} (\S+)$', text, re.M)
    by_reason: dict[str, float] = {}
    for reason, value in found:
        by_reason[reason] = by_reason.get(reason, 0.0) + float(value)
    return ", ".join(f"{reason} {value:g}" for reason, value in sorted(by_reason.items())) or "0"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from bench import harness
    from bench.upstream import stream_events
    from sluice.upstream.fds import raise_open_files_limit

    limit = raise_open_files_limit()  # inherited by every child, the gateway included
    counts = [int(x) for x in args.streams.split(",")]
    out: dict[str, Any] = {
        "seconds": args.seconds,
        "rate": args.rate,
        "deltas": args.deltas,
        "open_files_limit": limit,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="sluice-streams-") as tmp:
        fleet = harness.Fleet(Path(tmp))
        try:
            up_port, gw_port = harness.free_port(), harness.free_port()
            argv = [
                sys.executable,
                "-m",
                "bench.streams",
                "upstream",
                "--port",
                str(up_port),
                "--seconds",
                str(args.seconds),
                "--deltas",
                str(args.deltas),
            ]
            upstream = fleet.start("upstream", argv, cores=None)
            harness.wait_healthy(upstream, f"http://127.0.0.1:{up_port}/healthz")
            upstream_url = f"http://127.0.0.1:{up_port}"
            expected = len(b"".join(stream_events(args.deltas)))
            body = harness.request_body(True).decode()
            for n in counts:
                for target in (["direct"] if args.direct else []) + ["gateway"]:
                    row = run_one(fleet, harness, target, n, args, upstream_url, gw_port, body, expected)
                    out["runs"].append(row)
                    print(json.dumps(row), flush=True)
                    gw_port = harness.free_port()
        finally:
            fleet.close()
    return out


def run_one(
    fleet: Any,
    harness: Any,
    target: str,
    n: int,
    args: argparse.Namespace,
    upstream_url: str,
    gw_port: int,
    body: str,
    expected: int,
) -> dict[str, Any]:
    import psutil

    gateway = None
    url = upstream_url + "/v1/messages"
    if target == "gateway":
        gateway, _ = harness.launch_gateway(fleet, gw_port, upstream_url, None, name=f"gateway-{n}")
        harness.wait_healthy(gateway, f"http://127.0.0.1:{gw_port}/healthz")
        url = f"http://127.0.0.1:{gw_port}/v1/messages"
        for _ in range(20):  # warm every lazy path once, then read the idle footprint
            harness.post(url, harness.request_body(False), harness.request_headers())
        time.sleep(1.0)
    cmd = {
        "streams": n,
        "rate": args.rate,
        "url": url,
        "body": body,
        "headers": harness.request_headers(),
        "expected_len": expected,
    }
    ps = psutil.Process(gateway.pid) if gateway else None
    idle = ps.memory_info().rss if ps else 0
    cpu0 = gateway.cpu_s() if gateway else 0.0
    client = _client(fleet, f"client-{target}-{n}", cmd)
    peak_rss, peak_fds, samples = idle, 0, []
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_rss, peak_fds
        while not stop.wait(0.2):
            if ps is None:
                continue
            with contextlib.suppress(psutil.Error):
                rss, fds = ps.memory_info().rss, ps.num_fds()
                peak_rss, peak_fds = max(peak_rss, rss), max(peak_fds, fds)
                samples.append((rss, fds))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        line = client.popen.stdout.readline()  # type: ignore[union-attr]
    finally:
        stop.set()
        sampler.join()
    if not line:
        raise RuntimeError(f"the client died:\n{client.log_tail()}")
    result: dict[str, Any] = orjson.loads(line)
    row: dict[str, Any] = {"target": target, "streams": n, **result}
    if gateway is not None and ps is not None:
        gateway.wait_idle(limit=10)
        time.sleep(1.0)
        mib = 1024 * 1024
        row.update(
            gateway_cpu_s=round(gateway.cpu_s() - cpu0, 2),
            rss_idle_mib=round(idle / mib, 1),
            rss_peak_mib=round(peak_rss / mib, 1),
            rss_after_mib=round(ps.memory_info().rss / mib, 1),
            kib_per_open_stream=round((peak_rss - idle) / 1024 / max(1, result["peak_open"]), 1),
            peak_fds=peak_fds,
            gateway_saturated=_saturated(gw_port),
        )
        gateway.stop()
    return row


def report(out: dict[str, Any]) -> str:
    lines = [
        f"# Concurrent open streams through one gateway process ({out['seconds']:g} s each, opened at "
        f"{out['rate']:g}/s, {out['deltas']} deltas; open-files limit {out['open_files_limit']})",
        "",
        "| target | streams | ok | errors | peak open | TTFB p50 / p99 ms | gateway CPU s "
        "| RSS idle / peak / after MiB | KiB per open stream | peak fds | gateway_saturated |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["runs"]:
        rss = f"{r['rss_idle_mib']} / {r['rss_peak_mib']} / {r['rss_after_mib']}" if "rss_idle_mib" in r else "-"
        ttfb = f"{r['ttfb_p50_ms']:.1f} / {r['ttfb_p99_ms']:.1f}" if r.get("ttfb_p50_ms") is not None else "-"
        lines.append(
            f"| {r['target']} | {r['streams']} | {r['ok']} | {r['errors']} | {r['peak_open']} | {ttfb} "
            f"| {r.get('gateway_cpu_s', '-')} | {rss} | {r.get('kib_per_open_stream', '-')} | {r.get('peak_fds', '-')} "
            f"| {r.get('gateway_saturated', '-')} |"
        )
    errors = [(r["target"], r["streams"], r["error_kinds"]) for r in out["runs"] if r["errors"]]
    for target, n, kinds in errors:
        lines.append(f"\nErrors, {target} at {n}: " + "; ".join(f"{k} x{v}" for k, v in kinds.items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    up = sub.add_parser("upstream")
    up.add_argument("--port", type=int, required=True)
    up.add_argument("--seconds", type=float, required=True)
    up.add_argument("--deltas", type=int, default=20)
    sub.add_parser("client")
    parser.add_argument("--streams", default="1000,4000,10000", help="comma-separated counts, one run each")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the upstream takes per stream")
    parser.add_argument("--rate", type=float, default=1000.0, help="new streams per second")
    parser.add_argument("--deltas", type=int, default=20)
    parser.add_argument("--direct", action="store_true", help="also run each count against the upstream alone")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import uvloop

    from sluice.upstream.fds import raise_open_files_limit

    if args.role == "upstream":
        raise_open_files_limit()
        uvloop.run(serve_upstream(args.port, args.seconds, args.deltas))
        return
    if args.role == "client":
        raise_open_files_limit()
        cmd = orjson.loads(sys.stdin.buffer.readline())
        sys.stdout.buffer.write(orjson.dumps(uvloop.run(run_client(cmd))) + b"\n")
        sys.stdout.buffer.flush()
        return
    out = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "streams.json").write_text(json.dumps(out, indent=1))
    text = report(out)
    (args.out / "streams.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
