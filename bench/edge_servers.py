"""Which HTTP server should `sluice serve` run? The same app under each, side by side in one run.

Starts the fake Anthropic upstream, the bare aiohttp proxy (baseline) and one ``sluice serve`` per server in
``--servers`` (``uvicorn``: `sluice serve` as shipped, uvicorn with httptools; ``h1``: the in-house httptools
protocol of bench/edge_h1.py; ``granian``: granian's embedded ASGI server; the last two through
bench/edge_candidates.py), all with the same generated config (``--variant``, default ``audited``: full governance), all
pinned to the same core. Then interleaved rounds per mode (JSON, stream): a loaded run per target at
``--concurrency`` and a sequential probe (concurrency 1) for latency and stream TTFB. The figure that decides is the
gateway's CPU per request (scheduler clock, until idle again), as a ratio to the baseline of the same run.

``--workers``: instead, req/s of ``sluice serve --workers 1`` and ``--workers 2`` (redis variant, Redis at
``--redis-url``, database flushed; nothing pinned, every core in use).

Run: ``python -m bench.edge_servers [--quick] [--servers h1,uvicorn,granian] [--workers]``.
Writes ``bench/results/edge_servers.json`` and ``.md`` (``edge_workers.*`` with ``--workers``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench import harness, upstream

RESULTS = Path(__file__).resolve().parent / "results"
SERVERS = ("uvicorn", "h1", "granian")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.edge_servers", description=__doc__.splitlines()[0])
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--variant", default="audited", choices=harness.GATEWAY_VARIANTS)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--probe-requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--deltas", type=int, default=20)
    p.add_argument("--modes", default="edge,json,stream", help="edge (GET /healthz), json, stream")
    p.add_argument("--workers", action="store_true", help="measure req/s of --workers 1 and 2 instead")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    p.add_argument("--store-url", help="with --workers: the store (default: a SQLite file per run)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.probe_requests, args.rounds, args.warmup = 400, 50, 2, 100
    args.servers = [s for s in args.servers.split(",") if s]
    if any(s not in SERVERS for s in args.servers):
        p.error(f"--servers takes {', '.join(SERVERS)}")
    return args


def launch(
    fleet: harness.Fleet,
    name: str,
    upstream_url: str,
    cores: list[int] | None,
    *,
    variant: str,
    server: str,
    workers: int = 1,
    redis_url: str | None = None,
    store_url: str | None = None,
) -> tuple[harness.Proc, str]:
    workdir = fleet.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    config = harness.gateway_config(upstream_url, workdir, variant, redis_url)
    path = workdir / "sluice-bench.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = harness.free_port()
    store = ["--store", store_url or f"sqlite:///{workdir / 'bench.db'}", "--log-level", "warning"]
    if server == "uvicorn":  # `sluice serve` as shipped
        argv = [harness.sluice_executable(), "serve", "--config", str(path), "--port", str(port), *store]
        argv += ["--workers", str(workers)]
    else:  # the same app and start-up under a candidate server (bench/edge_candidates.py)
        argv = [sys.executable, "-m", "bench.edge_candidates", "--server", server, "--config", str(path)]
        argv += ["--port", str(port), *store]
    proc = fleet.start(name, argv, cores=cores, stop_timeout=45.0)
    url = f"http://127.0.0.1:{port}"
    harness.wait_healthy(proc, url + "/healthz", timeout=60)
    return proc, url + "/v1/messages"


def fresh_database(url: str) -> None:
    """The PostgreSQL database `url` names, dropped if it is there and created empty (through the
    server's `postgres` database, as the URL's user)."""
    import asyncio

    import asyncpg

    base, _, name = url.rpartition("/")
    name = name.split("?", 1)[0]

    async def run() -> None:
        admin = await asyncpg.connect(base + "/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    asyncio.run(run())


def cpu_of_tree(proc: harness.Proc) -> float:
    """CPU seconds of a process and its live children (the workers of a supervisor)."""
    total = proc.cpu_s()
    for child in proc.ps.children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except Exception:
            pass
    return total


def measure(
    loadgen: harness.LoadGen,
    proc: harness.Proc | None,
    url: str,
    mode: str,
    requests: int,
    concurrency: int,
    expected: int,
) -> dict[str, Any]:
    before = proc.cpu_s() if proc else 0.0
    edge = mode == "edge"  # GET /healthz: the server and the router, nothing else
    res = loadgen.run(
        url.replace("/v1/messages", "/healthz") if edge else url,
        stream=mode == "stream",
        requests=requests,
        concurrency=concurrency,
        expected_len=expected,
        timeout_s=60,
        method="GET" if edge else "POST",
    )
    if proc:
        proc.wait_idle()
    cpu = (proc.cpu_s() - before) if proc else 0.0
    lat = sorted(res["lat_us"])
    ttfb = sorted(res["ttfb_us"])
    return {
        "ok": res["ok"],
        "errors": res["errors"],
        "error_samples": res["error_samples"],
        "rps": res["ok"] / res["elapsed_s"] if res["elapsed_s"] else 0.0,
        "cpu_us_per_req": cpu * 1e6 / res["ok"] if res["ok"] else None,
        "p50_us": lat[len(lat) // 2] if lat else None,
        "ttfb_p50_us": ttfb[len(ttfb) // 2] if ttfb else None,
    }


def med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def servers_run(args: argparse.Namespace, fleet: harness.Fleet) -> dict[str, Any]:
    cores = harness.plan_cores(True)
    up_port = harness.free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    harness.start_upstream(fleet, up_port, args.deltas, cores["upstream"])
    base_port = harness.free_port()
    procs: dict[str, harness.Proc | None] = {"direct": None}
    urls = {"direct": upstream_url + "/v1/messages", "baseline": f"http://127.0.0.1:{base_port}/v1/messages"}
    procs["baseline"] = harness.start_baseline(fleet, base_port, upstream_url, cores["proxy"])
    for server in args.servers:
        procs[server], urls[server] = launch(
            fleet, f"gateway-{server}", upstream_url, cores["proxy"], variant=args.variant, server=server
        )
    loadgen = harness.LoadGen(fleet, cores["loadgen"])
    expected = {
        "edge": len(b'{"status":"ok"}'),
        "json": len(upstream.json_body(args.deltas)),
        "stream": sum(len(e) for e in upstream.stream_events(args.deltas)),
    }
    modes = [m for m in args.modes.split(",") if m in expected]
    targets = list(urls)
    for target in targets:  # the exact bytes, before any load (the edge mode is checked by the load generator)
        for mode in ("json", "stream"):
            status, body, _ = harness.post_full(
                urls[target], harness.request_body(mode == "stream"), harness.request_headers()
            )
            if status != 200 or len(body) != expected[mode]:
                raise RuntimeError(f"{target} {mode}: status {status}, {len(body)} bytes: {body[:200]!r}")
    runs: list[dict[str, Any]] = []
    for mode in modes:
        for target in targets:
            if mode == "edge" and target == "direct":
                continue
            measure(loadgen, procs[target], urls[target], mode, args.warmup, args.concurrency, expected[mode])
    for rnd in range(args.rounds):
        for mode in modes:
            order = targets[rnd % len(targets) :] + targets[: rnd % len(targets)]
            if mode == "edge":
                order = [t for t in order if t != "direct"]
            for target in order:
                r = measure(loadgen, procs[target], urls[target], mode, args.requests, args.concurrency, expected[mode])
                r.update(target=target, mode=mode, kind="loaded", round=rnd)
                runs.append(r)
                cpu = r["cpu_us_per_req"]
                print(
                    f"round {rnd + 1} {mode:6} {target:9} {r['rps']:6.0f} req/s"
                    + (f", CPU {cpu:5.0f} µs/req" if cpu else "")
                    + (f", {r['errors']} errors" if r["errors"] else ""),
                    flush=True,
                )
            for target in order:
                r = measure(loadgen, procs[target], urls[target], mode, args.probe_requests, 1, expected[mode])
                r.update(target=target, mode=mode, kind="probe", round=rnd)
                runs.append(r)
    loadgen.quit()
    exits = {t: p.stop() for t, p in procs.items() if p is not None and t != "baseline"}
    summary: dict[str, Any] = {}
    for mode in modes:
        rows = {}
        for target in targets:
            if mode == "edge" and target == "direct":
                continue
            loaded = [r for r in runs if r["target"] == target and r["mode"] == mode and r["kind"] == "loaded"]
            probe = [r for r in runs if r["target"] == target and r["mode"] == mode and r["kind"] == "probe"]
            rows[target] = {
                "cpu_us_per_req": med([r["cpu_us_per_req"] for r in loaded]),
                "rps": med([r["rps"] for r in loaded]),
                "p50_ms_c1": (med([r["p50_us"] for r in probe]) or 0) / 1000,
                "ttfb_ms_c1": (med([r["ttfb_p50_us"] for r in probe]) or 0) / 1000 if mode == "stream" else None,
                "errors": sum(r["errors"] for r in loaded + probe),
            }
        base = rows["baseline"]["cpu_us_per_req"]
        direct = rows.get("direct")
        for target, row in rows.items():
            if target == "direct":
                continue
            row["cpu_ratio_vs_baseline"] = row["cpu_us_per_req"] / base if base and row["cpu_us_per_req"] else None
            if direct is not None:
                row["added_p50_ms_c1"] = row["p50_ms_c1"] - direct["p50_ms_c1"]
            if mode == "stream":
                row["added_ttfb_ms_c1"] = row["ttfb_ms_c1"] - direct["ttfb_ms_c1"]
        summary[mode] = rows
    return {"summary": summary, "runs": runs, "exit_codes": exits, "variant": args.variant}


def workers_run(args: argparse.Namespace, fleet: harness.Fleet) -> dict[str, Any]:
    import redis

    r = redis.Redis.from_url(args.redis_url)
    r.flushdb()
    up_port = harness.free_port()
    upstream_url = f"http://127.0.0.1:{up_port}"
    harness.start_upstream(fleet, up_port, args.deltas, None)
    loadgen = harness.LoadGen(fleet, None)
    expected = {"json": len(upstream.json_body(args.deltas))}
    out: dict[str, Any] = {}
    for workers in (1, 2):
        if args.store_url and args.store_url.startswith("postgres"):
            fresh_database(args.store_url)  # each run from an empty store, as the SQLite file is
        proc, url = launch(
            fleet,
            f"gateway-w{workers}",
            upstream_url,
            None,
            variant="redis",
            server=args.servers[0],
            workers=workers,
            redis_url=args.redis_url,
            store_url=args.store_url,
        )
        measure(loadgen, None, url, "json", args.warmup, 64, expected["json"])
        rps = []
        for rnd in range(args.rounds):
            before = cpu_of_tree(proc)
            res = measure(loadgen, None, url, "json", args.requests, 64, expected["json"])
            cpu = cpu_of_tree(proc) - before
            rps.append(res["rps"])
            print(
                f"workers {workers} round {rnd + 1}: {res['rps']:.0f} req/s, {cpu * 1e6 / max(res['ok'], 1):.0f} µs/req"
                + (f", {res['errors']} errors" if res["errors"] else ""),
                flush=True,
            )
        out[str(workers)] = {"rps_median": statistics.median(rps), "rps": rps, "exit_code": proc.stop()}
    loadgen.quit()
    r.flushdb()
    return {"workers": out, "server": args.servers[0], "concurrency": 64, "store": args.store_url or "sqlite"}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# {report['title']}",
        "",
        f"Run {report['date']} on {report['nproc']} cores, commit {report['commit']}.",
        "",
    ]
    lines += [report["note"], ""]
    if "summary" in report:
        for mode, rows in report["summary"].items():
            head = "| target | CPU µs/req | × baseline | req/s | +p50 ms c=1 |" + (
                " +TTFB ms c=1 |" if mode == "stream" else ""
            )
            lines += [f"## {mode}", "", head, "|" + "---|" * (head.count("|") - 1)]
            for target, row in rows.items():
                cells = [
                    target,
                    f"{row['cpu_us_per_req']:.0f}" if row["cpu_us_per_req"] else "",
                    f"{row['cpu_ratio_vs_baseline']:.2f}" if row.get("cpu_ratio_vs_baseline") else "",
                    f"{row['rps']:.0f}",
                    f"{row['added_p50_ms_c1']:.3f}" if "added_p50_ms_c1" in row else f"({row['p50_ms_c1']:.3f})",
                ]
                if mode == "stream":
                    cells.append(
                        f"{row['added_ttfb_ms_c1']:.3f}" if "added_ttfb_ms_c1" in row else f"({row['ttfb_ms_c1']:.3f})"
                    )
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    if "workers" in report:
        lines += ["| workers | req/s (median) | rounds |", "|---|---|---|"]
        for n, row in report["workers"].items():
            lines.append(f"| {n} | {row['rps_median']:.0f} | {', '.join(f'{x:.0f}' for x in row['rps'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="sluice-edge-"))
    fleet = harness.Fleet(tmp)
    started = time.monotonic()
    try:
        result = workers_run(args, fleet) if args.workers else servers_run(args, fleet)
    finally:
        fleet.close()
    import subprocess

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=harness.REPO
    ).stdout.strip()
    name = "edge_workers" if args.workers else "edge_servers"
    report = {
        "title": "sluice serve --workers 1 vs 2 (req/s)" if args.workers else "HTTP servers for the same app",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "commit": commit,
        "duration_s": time.monotonic() - started,
        "options": {k: str(v) for k, v in vars(args).items()},
        "note": (
            f"JSON requests at concurrency 64 through the redis variant (store: {args.store_url or 'SQLite'}), "
            f"{args.rounds} rounds of {args.requests}; "
            "upstream, load generator, workers and Redis share the machine's cores (nothing pinned)."
            if args.workers
            else f"Gateway variant `{args.variant}`, every server pinned to the same core as the baseline; "
            f"{args.rounds} interleaved rounds of {args.requests} requests at concurrency {args.concurrency}, "
            f"{args.probe_requests} sequential probes for p50/TTFB; CPU = scheduler clock until idle, median over "
            "rounds. Mode `edge` is GET /healthz: the HTTP server and the router alone, no engine."
        ),
        **result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
