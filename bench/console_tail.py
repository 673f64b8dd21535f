"""Does the console slow the gateway's hot path? One ``sluice serve`` (the proxy-overhead bench's
``plain`` variant) behind the bench's fake upstream and load generator, measured in interleaved
rounds without and with console live tails open (each signed in with the bootstrap token and
reading /console/requests/tail over SSE while the load runs). Reports the gateway's CPU
microseconds per request and throughput per round, and the ratio with/without.

Run: ``python -m bench.console_tail [--requests 3000] [--rounds 3] [--tails 3] [--concurrency 16]``.
Writes ``bench/results/console_tail.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bench import harness, upstream

TOKEN = "bench-console-bootstrap-token-0123456789"


async def tail(base: str, stop: asyncio.Event, seen: list[int]) -> None:
    """Signs in to the console and reads the live tail until `stop` (cookies handled by hand: the
    gateway's are Secure, which aiohttp would not send over plain HTTP)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/console/sign-in") as resp:
            pre = resp.headers["set-cookie"].split(";", 1)[0]
            csrf = re.search(r'name="csrf" value="([^"]+)"', await resp.text())
        assert csrf
        form = urlencode({"csrf": csrf.group(1), "token": TOKEN, "next": "/console/requests"})
        headers = {"cookie": pre, "content-type": "application/x-www-form-urlencoded"}
        async with http.post(f"{base}/console/sign-in", data=form, headers=headers, allow_redirects=False) as resp:
            assert resp.status == 303, await resp.text()
            session = resp.headers["set-cookie"].split(";", 1)[0]
        headers = {"cookie": session, "accept": "text/event-stream"}
        async with http.get(f"{base}/console/requests/tail", headers=headers, timeout=None) as resp:
            assert resp.status == 200
            while not stop.is_set():
                try:
                    line = await asyncio.wait_for(resp.content.readline(), 0.5)
                except TimeoutError:
                    continue
                if line.startswith(b"event: request"):
                    seen[0] += 1


class Tails:
    """N tails in a thread of their own, so the load generator's timing is not ours."""

    def __init__(self, base: str, n: int) -> None:
        self.base, self.n = base, n
        self.seen = [0]
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __enter__(self) -> Tails:
        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._stop = asyncio.Event()
            self._ready.set()
            tasks = [tail(self.base, self._stop, self.seen) for _ in range(self.n)]
            self._loop.run_until_complete(asyncio.gather(*tasks))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        time.sleep(1.5)  # signed in and streaming before the load starts
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tails", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--deltas", type=int, default=20)
    args = parser.parse_args()
    os.environ["SLUICE_ADMIN_TOKEN"] = TOKEN  # the gateway's bootstrap token (inherited by the child)
    fleet = harness.Fleet(Path(tempfile.mkdtemp(prefix="sluice-console-tail-")))
    try:
        up_port, gw_port = harness.free_port(), harness.free_port()
        harness.start_upstream(fleet, up_port, args.deltas, None)
        gateway, _ = harness.start_gateway(fleet, gw_port, f"http://127.0.0.1:{up_port}", None)
        loadgen = harness.LoadGen(fleet, None)
        base = f"http://127.0.0.1:{gw_port}"
        url = f"{base}/v1/messages"
        expected = sum(len(e) for e in upstream.stream_events(args.deltas))
        loadgen.run(url, stream=True, requests=300, concurrency=args.concurrency, expected_len=expected, timeout_s=60)
        rounds: dict[str, list[dict[str, float]]] = {"without": [], "with": []}
        seen = 0
        for _ in range(args.rounds):
            for name in ("without", "with"):
                tails = Tails(base, args.tails) if name == "with" else None
                if tails is not None:
                    tails.__enter__()
                try:
                    gateway.wait_idle()
                    cpu0, t0 = gateway.cpu_s(), time.perf_counter()
                    res = loadgen.run(
                        url,
                        stream=True,
                        requests=args.requests,
                        concurrency=args.concurrency,
                        expected_len=expected,
                        timeout_s=120,
                    )
                    wall = time.perf_counter() - t0
                    gateway.wait_idle()
                    cpu = gateway.cpu_s() - cpu0
                finally:
                    if tails is not None:
                        tails.__exit__()
                        seen += tails.seen[0]
                issued = int(res["issued"])
                rounds[name].append({"cpu_us_per_request": cpu * 1e6 / issued, "requests_per_s": issued / wall})
        loadgen.quit()
        med = {
            name: {k: round(statistics.median(r[k] for r in rs), 1) for k in ("cpu_us_per_request", "requests_per_s")}
            for name, rs in rounds.items()
        }
        report: dict[str, Any] = {
            "tails_open": args.tails,
            "requests_per_round": args.requests,
            "rounds": rounds,
            "median": med,
            "cpu_ratio_with_over_without": round(
                med["with"]["cpu_us_per_request"] / med["without"]["cpu_us_per_request"], 3
            ),
            "throughput_ratio_with_over_without": round(
                med["with"]["requests_per_s"] / med["without"]["requests_per_s"], 3
            ),
            "tail_events_received": seen,
            "note": "the gateway's CPU includes serving the tails (one indexed poll per second each)",
        }
        print(json.dumps(report, indent=2))
        out = Path(__file__).parent / "results" / "console_tail.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        fleet.close()


if __name__ == "__main__":
    main()
