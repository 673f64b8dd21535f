"""Where does the gateway spend its CPU? Samples ``sluice serve`` with py-spy under the benchmark's load.

Starts the same fake upstream and gateway (same config, same pinning) as bench.proxy_overhead, attaches
``py-spy record --format raw`` to the gateway, drives it with the load generator (JSON and streamed requests) and
prints the functions with the most own (self) time, the most total (inclusive) time, and own time per package.
Writes ``bench/results/profile.md`` and the raw collapsed stacks to ``bench/results/profile.raw.txt`` (open them
in speedscope or feed them to flamegraph.pl).

Needs py-spy (``pip install py-spy``) and permission to ptrace the gateway (root, or ptrace_scope 0).

Run: ``python -m bench.profile_gateway [--requests 20000] [--concurrency 16] [--native]``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import harness, upstream

RESULTS = Path(__file__).resolve().parent / "results"
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def short_file(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3."):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker.startswith("/lib") and "/" in tail else tail
    repo = str(harness.REPO) + "/"
    return path.removeprefix(repo)


def package_of(path: str) -> str:
    f = short_file(path)
    if f.startswith("sluice/"):
        parts = f.split("/")
        return "/".join(parts[:2]) if len(parts) > 2 else f
    if "/" not in f:
        return f"stdlib:{f}" if f.endswith(".py") else f or "?"
    top = f.split("/", 1)[0]
    return f"stdlib:{top}" if top in ("asyncio", "concurrent", "json", "logging", "sqlite3", "email") else top


_THREAD = re.compile(r"^thread \((?P<tid>\d+)\): ?(?P<name>.*)$")


class ThreadProfile:
    def __init__(self) -> None:
        self.samples = 0
        self.own: collections.Counter[str] = collections.Counter()
        self.total: collections.Counter[str] = collections.Counter()
        self.packages: collections.Counter[str] = collections.Counter()


def thread_group(name: str) -> str:
    """``Thread-12 (_connection_worker_thread)`` and ``Thread-13 (...)`` are one group; MainThread stays itself."""
    return re.sub(r"^Thread-\d+", "Thread-N", name).strip() or "?"


def parse_raw(path: Path) -> dict[str, ThreadProfile]:
    """Collapsed stacks from ``py-spy record --threads --format raw``, aggregated per thread group."""
    threads: dict[str, ThreadProfile] = collections.defaultdict(ThreadProfile)
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = stack.split(";")
        group = "?"
        m = _THREAD.match(frames[0])
        if m is not None:
            group = thread_group(m["name"])
            frames = frames[1:]
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if not frames:
            continue
        names, files = [], []
        for frame in frames:
            fm = _FRAME.match(frame)
            names.append(f"{fm['func']} ({short_file(fm['file'])})" if fm else frame)
            files.append(fm["file"] if fm else "")
        prof = threads[group]
        prof.samples += count
        prof.own[names[-1]] += count
        prof.packages[package_of(files[-1])] += count
        for name in set(names):
            prof.total[name] += count
    return dict(threads)


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """CPU time of each live thread of a process, in ns (Linux schedstat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return out


def table(title: str, counter: collections.Counter[str], samples: int, top: int) -> str:
    lines = [f"### {title}", "", "| # | share | samples | function (file) |", "|---|---|---|---|"]
    for i, (name, n) in enumerate(counter.most_common(top), 1):
        lines.append(f"| {i} | {100 * n / samples:.1f}% | {n} | `{name}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile_gateway", description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20000, help="requests per mode while sampling")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--native", action="store_true", help="also sample C frames (uvloop, httptools, orjson, ...)")
    p.add_argument(
        "--variant", default="plain", choices=("plain", "local", "full", "audited"), help="governance on the key"
    )
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--deltas", type=int, default=20)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    cores = harness.plan_cores(True)
    tmp = Path(tempfile.mkdtemp(prefix="sluice-profile-"))
    fleet = harness.Fleet(tmp)
    raw = tmp / "profile.raw.txt"
    expected = {
        "json": len(upstream.json_body(args.deltas)),
        "stream": sum(len(e) for e in upstream.stream_events(args.deltas)),
    }
    try:
        up_port, gw_port = harness.free_port(), harness.free_port()
        upstream_url = f"http://127.0.0.1:{up_port}"
        harness.start_upstream(fleet, up_port, args.deltas, cores["upstream"])
        gateway, _db = harness.start_gateway(fleet, gw_port, upstream_url, cores["proxy"], variant=args.variant)
        loadgen = harness.LoadGen(fleet, cores["loadgen"])
        url = f"http://127.0.0.1:{gw_port}/v1/messages"
        for mode in ("json", "stream"):  # warm up before sampling
            loadgen.run(
                url,
                stream=mode == "stream",
                requests=1000,
                concurrency=args.concurrency,
                expected_len=expected[mode],
                timeout_s=60,
            )
        cmd = [
            py_spy(),
            "record",
            "--pid",
            str(gateway.pid),
            "--rate",
            str(args.rate),
            "--format",
            "raw",
            "--threads",
            "--output",
            str(raw),
        ]
        if args.native:
            cmd.append("--native")
        spy = fleet.start("py-spy", cmd, cores=cores["loadgen"], stop_timeout=30)
        time.sleep(1.5)  # let it attach
        started = gateway.cpu_s()
        main_started = thread_cpu_ns(gateway.pid).get(gateway.pid, 0)
        served = {}
        for mode in ("json", "stream"):
            res = loadgen.run(
                url,
                stream=mode == "stream",
                requests=args.requests,
                concurrency=args.concurrency,
                expected_len=expected[mode],
                timeout_s=300,
            )
            served[mode] = (res["ok"], res["errors"], res["elapsed_s"])
        cpu = gateway.cpu_s() - started
        main_cpu = (thread_cpu_ns(gateway.pid).get(gateway.pid, 0) - main_started) / 1e9
        spy.popen.send_signal(signal.SIGINT)
        spy.popen.wait(timeout=60)
        loadgen.quit()
        if not raw.exists():
            raise RuntimeError(f"py-spy wrote nothing:\n{spy.log_tail()}")
        threads = parse_raw(raw)
        if "MainThread" not in threads:
            raise RuntimeError(f"py-spy took no samples of the main thread:\n{spy.log_tail()}")
    finally:
        fleet.close()
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(raw, args.out / "profile.raw.txt")
    shutil.rmtree(tmp, ignore_errors=True)
    ok = sum(v[0] for v in served.values())
    main = threads["MainThread"]
    per_req = 1e6 / max(ok, 1)
    head = [
        "# Sluice gateway CPU profile (py-spy)",
        "",
        f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}: "
        + ", ".join(f"{m}: {v[0]} ok / {v[1]} errors in {v[2]:.1f} s" for m, v in served.items())
        + f" at concurrency {args.concurrency}, py-spy at {args.rate} Hz{' with native frames' if args.native else ''}"
        " (sampling slows the gateway down a little).",
        "",
        f"Gateway CPU while sampled (scheduler clocks, exact): {cpu * per_req:.0f} µs/request in all, of which the "
        f"main (event loop) thread {main_cpu * per_req:.0f} µs and other threads {(cpu - main_cpu) * per_req:.0f} µs "
        "(SQLite connection threads of aiosqlite, executor threads; short-lived threads are counted too).",
        "",
        "Samples per thread group (py-spy's idle detection counts threads blocked in a queue as busy, so only the "
        "main thread's tables below are trusted): "
        + ", ".join(f"{name}: {t.samples}" for name, t in sorted(threads.items(), key=lambda kv: -kv[1].samples)),
        "",
        "Tables: main thread only. Own time = samples whose innermost Python frame is the function; total = samples "
        "with the function anywhere on the stack. Time in C code (uvloop, httptools, orjson, sqlite3) is charged to "
        "the Python frame that called it unless --native.",
        "",
    ]
    body = [
        table("Top functions by own time (main thread)", main.own, main.samples, args.top),
        "",
        table(
            "Gateway code by total (inclusive) time (main thread, sluice/ only, CLI frames left out)",
            collections.Counter({k: v for k, v in main.total.items() if "(sluice/" in k and "(sluice/cli/" not in k}),
            main.samples,
            args.top,
        ),
        "",
        table("Own time by package (main thread)", main.packages, main.samples, args.top),
        "",
    ]
    text = "\n".join(head + body)
    (args.out / "profile.md").write_text(text)
    print(text)
    print(f"report: {args.out / 'profile.md'}, raw stacks: {args.out / 'profile.raw.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
