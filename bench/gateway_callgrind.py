"""Instructions per request of the bare proxy and the gateway variants, counted by valgrind's callgrind:
the figure of `bench.proxy_overhead` that a shared or noisy machine does not move.

    python -m bench.gateway_callgrind [--requests 200] [--warmup 100] [--gateways plain,full] [--modes json,stream]
        [--keep DIR]

The bench upstream (not instrumented), the bare aiohttp proxy and one `sluice serve` per variant (the same
generated configs as bench.proxy_overhead, see bench/README.md) each run under `valgrind --tool=callgrind`. Per
target and mode: `--warmup` requests, then two windows of N = `--requests` and 2N requests one at a time
(concurrency 1, the low-load case), each from zeroed counters (`callgrind_control -z`) to a dump (`-d`) taken
after a pause for the writes nobody awaits (`store.linger_ms`). Instructions per request: (second window -
first) / N, so what a window costs whatever its length (the pauses' timers, the dump) cancels out. Every thread
of the process is counted (the event loop, the store's writer thread). The answer bytes are checked by the load
generator as in bench.proxy_overhead.

The store's commits per request are read from each gateway's /metrics at the end: writes batch by the clock
(`store.linger_ms`), and under valgrind a request takes about 50 times longer, so fewer of them share a commit
than at full speed. (Instrumentation is on from the start: toggling it with `callgrind_control -i` gave dumps
whose counts went backwards, with threads.)

Writes bench/results/gateway_callgrind.json: instructions per request of each target and mode, and each
gateway's ratio to the bare proxy's (the 1.5x target of issue 14, `CPU_RATIO_TARGET`). With `--keep`, the dumps
are copied there (for callgrind_annotate).
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import harness, upstream
from bench.proxy_overhead import CPU_RATIO_TARGET, RESULTS, store_writes

LINGER_WAIT_S = 1.0  # > store.linger_ms (50 ms by default) and the request log's batching


def total_ir(dump: Path) -> int:
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):  # this dump's part (totals: since the start)
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def window(proc: harness.Proc, dumps: Path, name: str, send: Callable[[], dict[str, Any]], n: int) -> Path:
    """One measured window of `proc`: counters zeroed, `send()` (a load run of n requests, each of which
    must be answered with the exact bytes), a pause for the writes that linger, a dump; its file."""
    time.sleep(LINGER_WAIT_S)
    control = ["callgrind_control"]
    subprocess.run([*control, "-z", str(proc.pid)], check=True, capture_output=True)
    result = send()
    time.sleep(LINGER_WAIT_S)
    subprocess.run([*control, "-d", str(proc.pid)], check=True, capture_output=True)
    if result["ok"] != n:
        raise RuntimeError(f"{name}: {result}")
    return sorted(dumps.glob(f"cg.{name}.*"), key=lambda f: int(f.suffix[1:]))[-1]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": args.requests, "warmup": args.warmup, "deltas": args.deltas}
    expected = {
        "json": len(upstream.json_body(args.deltas)),
        "stream": sum(len(e) for e in upstream.stream_events(args.deltas)),
    }
    with tempfile.TemporaryDirectory(prefix="sluice-bench-cg-") as tmp_name:
        tmp = Path(tmp_name)
        fleet = harness.Fleet(tmp)
        try:
            up_port = harness.free_port()
            up_url = f"http://127.0.0.1:{up_port}"
            harness.start_upstream(fleet, up_port, args.deltas, None)

            def grind(name: str) -> list[str]:
                return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.{name}"]

            targets: dict[str, tuple[harness.Proc, str]] = {}
            port = harness.free_port()
            proc = harness.start_baseline(fleet, port, up_url, None, wrap=grind("baseline"), timeout=300)
            targets["baseline"] = (proc, f"http://127.0.0.1:{port}/v1/messages")
            for variant in args.gateways:
                port = harness.free_port()
                proc, _ = harness.launch_gateway(
                    fleet, port, up_url, None, variant=variant, name=f"gateway-{variant}", wrap=grind(variant),
                    redis_url=args.redis_url if variant == "redis" else None,
                )  # fmt: skip
                harness.wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", timeout=300)
                targets[variant] = (proc, f"http://127.0.0.1:{port}/v1/messages")
            load = harness.LoadGen(fleet, None)
            for name, (proc, url) in targets.items():
                sent = 0
                for mode in args.modes:
                    sent += args.warmup + 3 * args.requests
                    run = {"stream": mode == "stream", "concurrency": 1, "expected_len": expected[mode]}
                    warm = load.run(url, requests=args.warmup, timeout_s=600, **run)  # type: ignore[arg-type]
                    if warm["ok"] != args.warmup:
                        raise RuntimeError(f"{name} {mode} warm-up: {warm}")
                    windows = []
                    for n in (args.requests, 2 * args.requests):
                        send = functools.partial(load.run, url, requests=n, timeout_s=1200, **run)
                        dump = window(proc, tmp, name, send, n)
                        windows.append(total_ir(dump))
                        if args.keep is not None:
                            args.keep.mkdir(parents=True, exist_ok=True)
                            shutil.copyfile(dump, args.keep / f"callgrind.{name}.{mode}.{n}")
                    ir = (windows[1] - windows[0]) / args.requests
                    out[f"{name}_{mode}_ir"] = round(ir)
                    out[f"{name}_{mode}_window_ir"] = windows
                    print(f"{name:10} {mode:6} {ir / 1e6:8.3f} M instructions per request", flush=True)
                if name != "baseline":
                    # Batching goes by the clock (store.linger_ms) and a request takes some 50 times
                    # longer under valgrind, so fewer requests share a commit than at full speed: say how many.
                    writes = store_writes(url.replace("/v1/messages", "/metrics"), sent)
                    out[f"{name}_store_writes"] = writes
                    print(f"{name:10} store commits per request {writes['commits_per_request']:.2f}", flush=True)
            load.quit()
        finally:
            fleet.close()
    for variant in args.gateways:
        for mode in args.modes:
            ratio = out[f"{variant}_{mode}_ir"] / out[f"baseline_{mode}_ir"]
            out[f"{variant}_{mode}_x_baseline"] = round(ratio, 2)
            verdict = "meets" if ratio <= CPU_RATIO_TARGET else "misses"
            print(f"{variant:10} {mode:6} {ratio:6.2f} x the bare proxy ({verdict} the {CPU_RATIO_TARGET}x target)")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gateway_callgrind", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=200, help="instrumented requests per target and mode")
    p.add_argument("--warmup", type=int, default=100, help="uninstrumented requests first")
    p.add_argument("--gateways", default="plain,full", help=f"variants of {', '.join(harness.GATEWAY_VARIANTS)}")
    p.add_argument("--modes", default="json,stream")
    p.add_argument("--deltas", type=int, default=20, help="content_block_delta events per streamed answer")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    p.add_argument("--keep", type=Path, help="copy the callgrind dumps to this folder")
    p.add_argument("--out", type=Path, default=RESULTS / "gateway_callgrind.json")
    args = p.parse_args(argv)
    args.gateways = [g for g in args.gateways.split(",") if g]
    args.modes = [m for m in args.modes.split(",") if m]
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    out = measure(args)
    out["python"] = platform.python_version()
    out["machine"] = platform.machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
