"""What does the gateway cost on top of a bare proxy? One run answers with throughput, latency, CPU and memory.

Starts a fake Anthropic upstream, a bare aiohttp pass-through proxy (the baseline) and ``sluice serve`` with governance
on (virtual key, model allowlist, request log to SQLite), then drives the upstream directly, the baseline and the
gateway in interleaved rounds from a separate load-generator process, for JSON and streamed answers. Writes
``bench/results/latest.json`` and ``bench/results/latest.md``. See bench/README.md.

Run: ``python -m bench.proxy_overhead [--quick] [--requests N] [--concurrency N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness, upstream

TARGETS = ("direct", "baseline", "gateway")
PROXIES = ("baseline", "gateway")
CPU_RATIO_TARGET = 2.0
TTFB_TARGET_MS = 1.0
RESULTS = Path(__file__).resolve().parent / "results"


# --------------------------------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.proxy_overhead", description="Gateway overhead against a bare aiohttp proxy."
    )
    p.add_argument("--requests", type=int, help="requests per loaded run (default 3000; --quick 300)")
    p.add_argument("--concurrency", type=int, help="concurrent connections of the loaded runs (default 16)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 10; --quick 2)")
    p.add_argument(
        "--probe-requests",
        type=int,
        help="sequential (concurrency 1) requests per round and target "
        "for the unloaded latency/TTFB probe (default 300; --quick 50)",
    )
    p.add_argument("--warmup", type=int, help="warm-up requests per target and mode (default 1000; --quick 100)")
    p.add_argument("--deltas", type=int, default=20, help="content_block_delta events per streamed answer")
    p.add_argument("--modes", default="json,stream", help="comma-separated: json, stream")
    p.add_argument("--run-timeout", type=float, default=60.0, help="upper bound in seconds for one run")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for latest.json and latest.md")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (config, db, logs)")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "requests": 300 if quick else 3000,
        "concurrency": 16,
        "rounds": 2 if quick else 10,
        "probe_requests": 50 if quick else 300,
        "warmup": 100 if quick else 1000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in ("json", "stream") for m in args.modes):
        p.error("--modes takes json and/or stream")
    for name in ("requests", "concurrency", "rounds", "probe_requests"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# --------------------------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------------------------


def percentile(values: list[int] | list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (q in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


def ms(us: float | None) -> float | None:
    return None if us is None else us / 1000.0


def sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --------------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, fleet: harness.Fleet, cores: dict[str, list[int] | None]) -> None:
        self.args = args
        self.fleet = fleet
        self.cores = cores
        self.expected = {
            "json": len(upstream.json_body(args.deltas)),
            "stream": sum(len(e) for e in upstream.stream_events(args.deltas)),
        }
        self.runs: list[dict[str, Any]] = []
        self.gateway_requests = 0
        self.sanity: dict[str, Any] = {}

    def start(self) -> None:
        up_port, base_port, gw_port = harness.free_port(), harness.free_port(), harness.free_port()
        self.upstream_url = f"http://127.0.0.1:{up_port}"
        self.upstream = harness.start_upstream(self.fleet, up_port, self.args.deltas, self.cores["upstream"])
        self.baseline = harness.start_baseline(self.fleet, base_port, self.upstream_url, self.cores["proxy"])
        self.gateway, self.db = harness.start_gateway(self.fleet, gw_port, self.upstream_url, self.cores["proxy"])
        self.loadgen = harness.LoadGen(self.fleet, self.cores["loadgen"])
        self.urls = {
            "direct": f"{self.upstream_url}/v1/messages",
            "baseline": f"http://127.0.0.1:{base_port}/v1/messages",
            "gateway": f"http://127.0.0.1:{gw_port}/v1/messages",
        }
        self.proxy_procs = {"baseline": self.baseline, "gateway": self.gateway}
        self.rss_start = {name: p.rss_mib() for name, p in self.proxy_procs.items()}

    def check_wire(self) -> None:
        """Before any load: every path answers the exact upstream bytes, and governance is really on."""
        want = {
            "json": upstream.json_body(self.args.deltas),
            "stream": b"".join(upstream.stream_events(self.args.deltas)),
        }
        for target in TARGETS:
            for mode in ("json", "stream"):
                status, body = harness.post(
                    self.urls[target], harness.request_body(mode == "stream"), harness.request_headers()
                )
                if target == "gateway":
                    self.gateway_requests += 1
                if status != 200 or body != want[mode]:
                    raise RuntimeError(
                        f"{target} {mode}: status {status}, body differs from the upstream's: {body[:300]!r}"
                    )
        denied_status, denied = harness.post(
            self.urls["gateway"], harness.request_body(False, harness.DENIED_MODEL), harness.request_headers()
        )
        bad_key_status, _ = harness.post(
            self.urls["gateway"], harness.request_body(False), harness.request_headers("sk-sluice-not-a-key")
        )
        self.gateway_requests += 2
        if denied_status != 403 or bad_key_status != 401:
            raise RuntimeError(
                f"governance is not on: disallowed model -> {denied_status} {denied[:200]!r}, unknown key -> "
                f"{bad_key_status}"
            )
        self.sanity = {
            "byte_exact_json_and_stream": True,
            "disallowed_model_status": denied_status,
            "unknown_key_status": bad_key_status,
        }

    def measure(self, target: str, mode: str, kind: str, requests: int, concurrency: int, rnd: int) -> dict[str, Any]:
        proxy = self.proxy_procs.get(target)
        watched = {"upstream": self.upstream, "loadgen": self.loadgen.proc}
        if proxy is not None:
            watched["proxy"] = proxy
        before = {k: p.cpu_s() for k, p in watched.items()}
        before_ps = {k: p.cpu_s_psutil() for k, p in watched.items()}
        res = self.loadgen.run(
            self.urls[target],
            stream=mode == "stream",
            requests=requests,
            concurrency=concurrency,
            expected_len=self.expected[mode],
            timeout_s=self.args.run_timeout,
        )
        at_end = proxy.cpu_s() if proxy is not None else 0.0
        settle_s = proxy.wait_idle() if proxy is not None else 0.0
        after = {k: p.cpu_s() for k, p in watched.items()}
        after_ps = {k: p.cpu_s_psutil() for k, p in watched.items()}
        if target == "gateway":
            self.gateway_requests += res["issued"]
        run = {
            "round": rnd,
            "target": target,
            "mode": mode,
            "kind": kind,
            "concurrency": concurrency,
            "ok": res["ok"],
            "errors": res["errors"],
            "error_samples": res["error_samples"],
            "timed_out": res["timed_out"],
            "elapsed_s": res["elapsed_s"],
            "cpu_s": {k: after[k] - before[k] for k in watched},
            "settle_s": settle_s,
            "proxy_cpu_s_during_load": at_end - before["proxy"] if proxy is not None else None,
            "cpu_s_psutil": {k: after_ps[k] - before_ps[k] for k in watched},
            "lat_us": res["lat_us"],
            "ttfb_us": res["ttfb_us"],
        }
        if res["errors"]:
            print(f"  ! {target} {mode}: {res['errors']} errors, e.g. {res['error_samples'][:2]}", file=sys.stderr)
        return run

    def warm_up(self) -> None:
        for target in TARGETS:
            for mode in self.args.modes:
                run = self.measure(target, mode, "warmup", self.args.warmup, self.args.concurrency, 0)
                if run["ok"] == 0:
                    raise RuntimeError(f"warm-up of {target} ({mode}) failed: {run['error_samples']}")

    def rounds(self) -> None:
        a = self.args
        for rnd in range(1, a.rounds + 1):
            for mode in a.modes:
                k = (rnd - 1) % len(TARGETS)
                order = TARGETS[k:] + TARGETS[:k]  # rotate who goes first, so drifts and warm caches even out
                for target in order:
                    run = self.measure(target, mode, "loaded", a.requests, a.concurrency, rnd)
                    self.runs.append(run)
                    cpu = run["cpu_s"].get("proxy")
                    per_req = f", proxy CPU {cpu * 1e6 / run['ok']:.0f} µs/req" if cpu and run["ok"] else ""
                    print(
                        f"round {rnd}/{a.rounds} {mode:6} {target:8} c={a.concurrency}: {run['ok']} ok, "
                        f"{run['ok'] / run['elapsed_s']:.0f} req/s{per_req}",
                        flush=True,
                    )
                for target in reversed(order):
                    self.runs.append(self.measure(target, mode, "unloaded", a.probe_requests, 1, rnd))

    def finish_gateway(self) -> dict[str, Any]:
        """Stop the gateway gracefully (its recorder drains on shutdown), then count its request log."""
        self.rss_end = {name: p.rss_mib() for name, p in self.proxy_procs.items()}
        code = self.gateway.stop()
        return request_log_check(self.db, self.gateway_requests, code, self.args.deltas)


def request_log_check(db: Path, expected: int, exit_code: int | None, deltas: int) -> dict[str, Any]:
    out: dict[str, Any] = {"db": str(db), "expected_rows": expected, "gateway_exit_code": exit_code}
    spill = db.parent / "requestlog.spill.jsonl"
    out["spill_file_lines"] = len(spill.read_bytes().splitlines()) if spill.exists() else 0
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT COUNT(*), SUM(status = 200), SUM(status = 403), SUM(status = 401), SUM(stream), "
            "SUM(status = 200 AND input_tokens = 12 AND output_tokens = ?), SUM(status = 200 AND cost_pico > 0) "
            "FROM request_log",
            (deltas,),
        ).fetchone()
    rows, ok, denied, unauth, streamed, metered, priced = (int(v or 0) for v in row)
    out.update(
        rows=rows,
        status_200=ok,
        status_403=denied,
        status_401=unauth,
        streamed=streamed,
        metered_200=metered,
        priced_200=priced,
        complete=rows == expected and metered == ok and priced == ok,
    )
    return out


# --------------------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in modes:
        per_target: dict[str, Any] = {}
        for target in TARGETS:
            loaded = [r for r in runs if r["mode"] == mode and r["target"] == target and r["kind"] == "loaded"]
            probe = [r for r in runs if r["mode"] == mode and r["target"] == target and r["kind"] == "unloaded"]
            lat = [v for r in loaded for v in r["lat_us"]]
            ttfb = [v for r in loaded for v in r["ttfb_us"]]
            plat = [v for r in probe for v in r["lat_us"]]
            pttfb = [v for r in probe for v in r["ttfb_us"]]
            ok = sum(r["ok"] for r in loaded)
            t: dict[str, Any] = {
                "requests_ok": ok,
                "errors": sum(r["errors"] for r in loaded + probe),
                "rps": spread([r["ok"] / r["elapsed_s"] for r in loaded if r["elapsed_s"] > 0]),
                "p50_ms": ms(percentile(lat, 50)),
                "p99_ms": ms(percentile(lat, 99)),
                "ttfb_p50_ms": ms(percentile(ttfb, 50)),
                "unloaded_p50_ms": ms(percentile(plat, 50)),
                "unloaded_p99_ms": ms(percentile(plat, 99)),
                "unloaded_ttfb_p50_ms": ms(percentile(pttfb, 50)),
                "upstream_plus_loadgen_core_util": spread(
                    [(r["cpu_s"]["upstream"] + r["cpu_s"]["loadgen"]) / r["elapsed_s"] for r in loaded]
                ),
            }
            if target in PROXIES:
                t["cpu_us_per_req"] = spread([r["cpu_s"]["proxy"] * 1e6 / r["ok"] for r in loaded if r["ok"]])
                t["cpu_us_per_req_pooled"] = (sum(r["cpu_s"]["proxy"] for r in loaded) * 1e6 / ok) if ok else None
                t["cpu_us_per_req_pooled_psutil"] = (
                    (sum(r["cpu_s_psutil"]["proxy"] for r in loaded) * 1e6 / ok) if ok else None
                )
                t["proxy_core_util"] = spread([r["proxy_cpu_s_during_load"] / r["elapsed_s"] for r in loaded])
            per_target[target] = t
        direct = per_target["direct"]
        for target in PROXIES:
            t = per_target[target]
            for key in (
                "p50_ms",
                "p99_ms",
                "ttfb_p50_ms",
                "unloaded_p50_ms",
                "unloaded_p99_ms",
                "unloaded_ttfb_p50_ms",
            ):
                t["added_" + key] = sub(t[key], direct[key])
        gw, base = per_target["gateway"]["cpu_us_per_req"]["median"], per_target["baseline"]["cpu_us_per_req"]["median"]
        summary[mode] = {"targets": per_target, "cpu_ratio_gateway_baseline": gw / base if gw and base else None}
    return summary


def verdicts(summary: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, s in summary.items():
        ratio = s["cpu_ratio_gateway_baseline"]
        out[f"cpu_ratio_{mode}"] = {
            "value": ratio,
            "target": f"<= {CPU_RATIO_TARGET}",
            "pass": ratio is not None and ratio <= CPU_RATIO_TARGET,
        }
    if "stream" in summary:
        gw = summary["stream"]["targets"]["gateway"]
        added = gw["added_unloaded_ttfb_p50_ms"]
        out["ttfb_overhead_ms"] = {
            "value": added,
            "measured_at": "concurrency 1 (the latency the gateway adds to one request, without queueing)",
            "under_load_value": gw["added_ttfb_p50_ms"],
            "target": f"< {TTFB_TARGET_MS}",
            "pass": added is not None and added < TTFB_TARGET_MS,
        }
    return out


def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    c = report["options"]["concurrency"]
    out = []
    for mode, s in report["summary"].items():
        head = [
            "target",
            "req/s",
            "p50 ms",
            "p99 ms",
            "+p50 ms",
            "+p99 ms",
            "CPU µs/req (min–max)",
            "proxy core",
            "RSS MiB",
        ]
        if mode == "stream":
            head[6:6] = ["TTFB p50 ms", "+TTFB ms"]
        rows = []
        for target in TARGETS:
            t = s["targets"][target]
            proxy = target in PROXIES
            cpu = t.get("cpu_us_per_req") or {}
            row = [
                target,
                fmt(t["rps"]["median"], 0),
                fmt(t["p50_ms"]),
                fmt(t["p99_ms"]),
                fmt(t.get("added_p50_ms")) if proxy else "",
                fmt(t.get("added_p99_ms")) if proxy else "",
                f"{fmt(cpu.get('median'), 0)} ({fmt(cpu.get('min'), 0)}–{fmt(cpu.get('max'), 0)})" if proxy else "",
                f"{fmt(t['proxy_core_util']['median'] * 100, 0)}%" if proxy else "",
                fmt(report["rss_mib"]["end"][target], 1) if proxy else "",
            ]
            if mode == "stream":
                row[6:6] = [fmt(t["ttfb_p50_ms"]), fmt(t.get("added_ttfb_p50_ms")) if proxy else ""]
            rows.append(row)
        out.append((f"{mode}, loaded (concurrency {c}, medians over rounds; latency pooled)", head, rows))
        head = ["target", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms"]
        if mode == "stream":
            head += ["TTFB p50 ms", "+TTFB ms"]
        rows = []
        for target in TARGETS:
            t = s["targets"][target]
            proxy = target in PROXIES
            row = [
                target,
                fmt(t["unloaded_p50_ms"], 3),
                fmt(t["unloaded_p99_ms"], 3),
                fmt(t.get("added_unloaded_p50_ms"), 3) if proxy else "",
                fmt(t.get("added_unloaded_p99_ms"), 3) if proxy else "",
            ]
            if mode == "stream":
                row += [fmt(t["unloaded_ttfb_p50_ms"], 3), fmt(t.get("added_unloaded_ttfb_p50_ms"), 3) if proxy else ""]
            rows.append(row)
        out.append((f"{mode}, unloaded (concurrency 1)", head, rows))
    return out


def render_text(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    return "\n".join(lines)


def render_md(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def headline(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, v in report["verdicts"].items():
        mark = "PASS" if v["pass"] else "FAIL"
        if name.startswith("cpu_ratio"):
            lines.append(
                f"gateway/baseline CPU µs per request ({name.removeprefix('cpu_ratio_')}): "
                f"{fmt(v['value'])} (target {v['target']}) {mark}"
            )
        else:
            lines.append(
                f"stream TTFB overhead, gateway minus direct, p50 at concurrency 1: {fmt(v['value'], 3)} ms "
                f"(target {v['target']} ms) {mark}; under load (concurrency "
                f"{report['options']['concurrency']}): {fmt(v['under_load_value'], 2)} ms"
            )
    log = report["request_log"]
    lines.append(
        f"request log: {log['rows']} rows in SQLite for {log['expected_rows']} gateway requests "
        f"({log['status_200']} x 200, {log['status_403']} x 403, {log['status_401']} x 401; "
        f"{log['metered_200']} metered, {log['priced_200']} priced, {log['streamed']} streamed; "
        f"spill lines {log['spill_file_lines']}) -> {'complete' if log['complete'] else 'INCOMPLETE'}"
    )
    return lines


def markdown(report: dict[str, Any]) -> str:
    m, o = report["machine"], report["options"]
    out = [
        "# Sluice proxy overhead",
        "",
        f"Run {report['date']} on {m['nproc']} cores ({m['cpu_model']}), Python {m['python']}, "
        f"sluice commit {m['git_commit'] or 'unknown'}{' (dirty tree)' if m.get('git_dirty') else ''}. "
        f"Load average at start {m['loadavg_start']}, at end {m['loadavg_end']}. Took {report['duration_s']:.0f} s.",
        "",
        f"Options: {o['requests']} requests per loaded run at concurrency {o['concurrency']}, {o['rounds']} "
        f"interleaved rounds, {o['probe_requests']} sequential probe requests per round and target, "
        f"{o['warmup']} warm-up requests, {o['deltas']} text deltas per stream{', quick' if o['quick'] else ''}.",
        "",
        "Gateway: `sluice serve` as shipped; governance on: virtual key with a model allowlist and a team, "
        "provider key, request log to SQLite.",
        "",
        f"Pinning: {report['pinning']}",
        "",
        "## Verdict",
        "",
        *[f"- {line}" for line in headline(report)],
        "",
    ]
    for title, head, rows in tables(report):
        out += [f"## {title}", "", render_md(head, rows), ""]
    out += [
        "Columns: `+` = proxy minus direct (upstream hit without a proxy). CPU µs/req = user+system CPU time of the "
        "proxy process from the start of the run until it is idle again (so request-log batches written just after "
        "the last answer count) / successful requests (median over rounds, min–max). proxy core = share of "
        "one core the proxy used during the run. RSS after the whole run.",
        "",
        "Upstream + load generator core use (shows whether the client side, not the proxy, limits req/s): "
        + ", ".join(
            f"{mode}/{t}: {fmt(s['targets'][t]['upstream_plus_loadgen_core_util']['median'] * 100, 0)}%"
            for mode, s in report["summary"].items()
            for t in TARGETS
        ),
        "",
        "CPU µs/req pooled over all rounds (sum of CPU / sum of requests), scheduler clock vs psutil cpu_times "
        "(10 ms ticks): "
        + ", ".join(
            f"{mode}/{t}: {fmt(s['targets'][t]['cpu_us_per_req_pooled'], 1)} vs "
            f"{fmt(s['targets'][t]['cpu_us_per_req_pooled_psutil'], 1)}"
            for mode, s in report["summary"].items()
            for t in PROXIES
        ),
        "",
        "Errors: "
        + ", ".join(
            f"{mode}/{t}: {s['targets'][t]['errors']}" for mode, s in report["summary"].items() for t in TARGETS
        ),
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------------------------
# Machine information
# --------------------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *cmd], cwd=harness.REPO, capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    versions = {}
    for pkg in ("sluice", "aiohttp", "uvicorn", "uvloop", "httptools", "orjson"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "nproc": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "sluice")),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def pinning_text(cores: dict[str, list[int] | None]) -> str:
    if not cores["proxy"]:
        return "none (single usable core, or --no-pin)"
    return (
        f"baseline and gateway on core {cores['proxy']} (they never run load at the same time); upstream on "
        f"{cores['upstream']}, load generator on {cores['loadgen']}, orchestrator on {cores['orchestrator']} "
        "(os.sched_setaffinity before exec)"
    )


# --------------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------------


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    machine = machine_info()  # before pinning this process, so usable_cores is the machine's
    cores = harness.plan_cores(not args.no_pin)
    if cores["orchestrator"]:
        os.sched_setaffinity(0, cores["orchestrator"])
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    fleet = harness.Fleet(tmp)
    print(f"workdir {tmp}; pinning: {pinning_text(cores)}", flush=True)
    try:
        bench = Bench(args, fleet, cores)
        bench.start()
        print(
            f"processes: upstream {bench.upstream.pid}, baseline {bench.baseline.pid}, gateway {bench.gateway.pid}, "
            f"loadgen {bench.loadgen.proc.pid}",
            flush=True,
        )
        bench.check_wire()
        bench.warm_up()
        bench.rounds()
        bench.loadgen.quit()
        request_log = bench.finish_gateway()
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            print("interrupted: stopping every process", file=sys.stderr)
        for proc in fleet.procs:
            tail = proc.log_tail(15)
            if tail:
                print(f"--- {proc.name} log ---\n{tail}", file=sys.stderr)
        raise
    finally:
        fleet.close()
        if not args.keep_tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    summary = summarise(bench.runs, args.modes)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": time.monotonic() - started,
        "machine": machine,
        "options": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "pinning": pinning_text(cores),
        "sanity": bench.sanity,
        "summary": summary,
        "rss_mib": {"start": bench.rss_start, "end": bench.rss_end},
        "request_log": request_log,
        "runs": [{k: v for k, v in r.items() if k not in ("lat_us", "ttfb_us")} for r in bench.runs],
    }
    report["verdicts"] = verdicts(summary)
    print()
    for title, head, rows in tables(report):
        print(f"{title}\n{render_text(head, rows)}\n")
    for line in headline(report):
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    import orjson

    (args.out / "latest.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    (args.out / "latest.md").write_text(markdown(report))
    print(f"\nreport: {args.out / 'latest.json'} and {args.out / 'latest.md'} ({report['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
