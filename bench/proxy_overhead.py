"""What does the gateway cost on top of a bare proxy, and what do budgets and rate limits add? One run answers with
throughput, latency, CPU and memory.

Starts a fake Anthropic upstream, a bare aiohttp pass-through proxy (the baseline) and one ``sluice serve`` process per
gateway variant (``plain``: virtual key, model allowlist, request log to SQLite; ``local``: the same plus budgets and
rate limits counted in the gateway; ``redis``: the same limits counted in Redis), then drives the upstream directly,
the baseline and every variant in interleaved rounds from a separate load-generator process, for JSON and streamed
answers. Writes ``bench/results/latest.json`` and ``bench/results/latest.md``. See bench/README.md.

Run: ``python -m bench.proxy_overhead [--quick] [--gateways plain,local,redis] [--requests N] [--rounds N]``.
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
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench import harness, upstream

VARIANTS = harness.GATEWAY_VARIANTS
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/12"
CPU_RATIO_TARGET = 1.5  # issue 14: full governance at most 1.5x the bare proxy's CPU per request
TTFB_TARGET_MS = 0.3  # issue 14: stream time to first byte within 0.3 ms of the bare proxy's
PACED_TARGET_MS = 1.0  # issue 14: +p50 at 50 req/s within 1 ms of the bare proxy's
RESULTS = Path(__file__).resolve().parent / "results"
VARIANT_TEXT = {
    "plain": "virtual key (team, model allowlist), request log; no budget or rate limit on the key",
    "local": "plain + key budget $1M/day, team budget $1M/month, key token and request rate limits and "
    "max_concurrent_requests 1000 (all out of reach), governance.backend local",
    "full": "local + the audit chain (audit.hmac_key: every request sealed and group-committed before its last byte) "
    "with signed checkpoints under a configured key (audit.checkpoint_key), request log: all of governance at once",
    "redis": "the same limits as local, governance.backend redis",
    "audited": "local + the tamper-evident audit log (every request sealed and group-committed before its last byte)",
    "nometrics": "plain with observability.metrics.enabled false (plain minus this: the request metrics' cost)",
}


def label(target: str) -> str:
    return f"gateway {target}" if target in VARIANTS else target


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
    p.add_argument("--paced-rate", type=float, default=50.0, help="requests/s of the paced low-load probe (default 50)")
    p.add_argument(
        "--paced-requests",
        type=int,
        help="requests per round, target and mode of the paced probe (default 250; --quick 50; 0: no paced probe)",
    )
    p.add_argument("--warmup", type=int, help="warm-up requests per target and mode (default 1000; --quick 100)")
    p.add_argument("--deltas", type=int, default=20, help="content_block_delta events per streamed answer")
    p.add_argument("--modes", default="json,stream", help="comma-separated: json, stream")
    p.add_argument(
        "--gateways",
        default="plain,local,full,redis",
        help="comma-separated gateway variants, one process each: plain (no budget or rate limit), local "
        "(budgets and rate limits, counters in the gateway), full (local + audit chain with signed checkpoints), "
        "redis (local's limits, counters in Redis), audited (local + audit chain); default plain,local,full,redis",
    )
    p.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"Redis for the redis variant; its database is flushed at start and end (default {DEFAULT_REDIS_URL})",
    )
    p.add_argument("--run-timeout", type=float, default=60.0, help="upper bound in seconds for one run")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for latest.json and latest.md")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (configs, dbs, logs)")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "requests": 300 if quick else 3000,
        "concurrency": 16,
        "rounds": 2 if quick else 10,
        "probe_requests": 50 if quick else 300,
        "paced_requests": 50 if quick else 250,
        "warmup": 100 if quick else 1000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or any(m not in ("json", "stream") for m in args.modes):
        p.error("--modes takes json and/or stream")
    gateways = [g.strip() for g in args.gateways.split(",") if g.strip()]
    if not gateways or any(g not in VARIANTS for g in gateways) or len(set(gateways)) != len(gateways):
        p.error(f"--gateways takes distinct names among {', '.join(VARIANTS)}")
    args.gateways = [v for v in VARIANTS if v in gateways]  # a fixed order: plain is the reference
    if "redis" in args.gateways:
        db = urllib.parse.urlsplit(args.redis_url).path.strip("/")
        if not db.isdigit() or int(db) == 0:
            p.error("--redis-url must name a dedicated database other than 0 (e.g. .../12): it is flushed")
    for name in ("requests", "concurrency", "rounds", "probe_requests"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.paced_requests < 0 or args.paced_rate <= 0:
        p.error("--paced-requests must be >= 0 and --paced-rate > 0")
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
# Redis (for the redis variant)
# --------------------------------------------------------------------------------------------------------------------


class RedisSide:
    """The Redis the redis variant counts in: its dedicated database is flushed at start and end, and the server
    process's CPU clock is read around every run (the counting work moves there out of the gateway)."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        try:
            info = self.client.info("server")
        except redis.RedisError as exc:
            raise RuntimeError(
                f"Redis at {url} is not reachable ({exc}); start one with: redis-server --daemonize yes "
                '--bind 127.0.0.1 --port 6379 --save "" --appendonly no (or leave redis out of --gateways)'
            ) from exc
        self.pid = int(info["process_id"])
        self.version = str(info.get("redis_version"))
        self.proc: harness.ExternalProc | None = None
        self.cpu_note = ""
        try:
            proc = harness.ExternalProc("redis", self.pid)
            if "redis" in proc.ps.name():
                self.proc = proc
            else:
                self.cpu_note = f"pid {self.pid} here is {proc.ps.name()!r}, not redis-server (other pid namespace?)"
        except Exception as exc:  # psutil.Error: not visible from here (container, other namespace)
            self.cpu_note = f"cannot read the CPU of pid {self.pid}: {exc}"
        self.affinity: list[int] | None = None
        if self.proc is not None:
            try:
                self.affinity = sorted(self.proc.ps.cpu_affinity() or [])
            except Exception:
                self.affinity = None
        self.keys_at_start = self.flush()
        self.keys_after_run: int | None = None
        self.keys_at_end: int | None = None

    def dbsize(self) -> int:
        return int(self.client.dbsize())

    def flush(self) -> int:
        n = self.dbsize()
        self.client.flushdb()
        return n

    def close(self) -> None:
        """Flush the benchmark's database (best effort: also runs on the error path)."""
        try:
            self.keys_after_run = self.dbsize()
            self.keys_at_end = self.flush()
        except Exception as exc:
            print(f"warning: could not flush Redis {self.url}: {exc}", file=sys.stderr)
        finally:
            self.client.close()

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "pid": self.pid,
            "version": self.version,
            "affinity": self.affinity,
            "cpu_measured": self.proc is not None,
            "cpu_note": self.cpu_note,
            "keys_flushed_at_start": self.keys_at_start,
            "keys_after_run": self.keys_after_run,
        }


# --------------------------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, fleet: harness.Fleet, cores: dict[str, list[int] | None]) -> None:
        self.args = args
        self.fleet = fleet
        self.cores = cores
        self.gateways: list[str] = list(args.gateways)
        self.targets = ["direct", "baseline", *self.gateways]
        self.proxies = ["baseline", *self.gateways]
        self.expected = {
            "json": len(upstream.json_body(args.deltas)),
            "stream": sum(len(e) for e in upstream.stream_events(args.deltas)),
        }
        self.runs: list[dict[str, Any]] = []
        # Per gateway variant: requests sent (every status) and answers that came back 200 with the exact bytes.
        self.sent = {v: {"requests": 0, "ok_200": 0} for v in self.gateways}
        self.sanity: dict[str, Any] = {}
        self.redis: RedisSide | None = None
        self.dbs: dict[str, Path] = {}

    def start(self) -> None:
        if "redis" in self.gateways:
            self.redis = RedisSide(self.args.redis_url)
        up_port, base_port = harness.free_port(), harness.free_port()
        self.upstream_url = f"http://127.0.0.1:{up_port}"
        self.upstream = harness.start_upstream(self.fleet, up_port, self.args.deltas, self.cores["upstream"])
        self.baseline = harness.start_baseline(self.fleet, base_port, self.upstream_url, self.cores["proxy"])
        self.urls = {
            "direct": f"{self.upstream_url}/v1/messages",
            "baseline": f"http://127.0.0.1:{base_port}/v1/messages",
        }
        self.proxy_procs: dict[str, harness.Proc] = {"baseline": self.baseline}
        ports = {}
        for v in self.gateways:  # start them all, then wait: they boot in parallel
            ports[v] = harness.free_port()
            self.proxy_procs[v], self.dbs[v] = harness.launch_gateway(
                self.fleet,
                ports[v],
                self.upstream_url,
                self.cores["proxy"],
                variant=v,
                redis_url=self.args.redis_url if v == "redis" else None,
                name=f"gateway-{v}",
            )
        for v in self.gateways:
            harness.wait_healthy(self.proxy_procs[v], f"http://127.0.0.1:{ports[v]}/healthz")
            self.urls[v] = f"http://127.0.0.1:{ports[v]}/v1/messages"
        self.loadgen = harness.LoadGen(self.fleet, self.cores["loadgen"])
        self.rss_start = {name: p.rss_mib() for name, p in self.proxy_procs.items()}

    def check_wire(self) -> None:
        """Before any load: every path answers the exact upstream bytes, governance is really on, and the variants
        with limits really enforce them (their answers carry the budget and rate-limit headers)."""
        want = {
            "json": upstream.json_body(self.args.deltas),
            "stream": b"".join(upstream.stream_events(self.args.deltas)),
        }
        limit_headers: dict[str, dict[str, str]] = {}
        for target in self.targets:
            for mode in ("json", "stream"):
                status, body, headers = harness.post_full(
                    self.urls[target], harness.request_body(mode == "stream"), harness.request_headers()
                )
                if target in self.sent:
                    self.sent[target]["requests"] += 1
                    self.sent[target]["ok_200"] += status == 200 and body == want[mode]
                    limit_headers[target] = {
                        k: v for k, v in headers.items() if k.startswith(("x-sluice-budget", "x-ratelimit"))
                    }
                if status != 200 or body != want[mode]:
                    raise RuntimeError(
                        f"{label(target)} {mode}: status {status}, body differs from the upstream's: {body[:300]!r}"
                    )
        variants: dict[str, Any] = {}
        for v in self.gateways:
            denied_status, denied = harness.post(
                self.urls[v], harness.request_body(False, harness.DENIED_MODEL), harness.request_headers()
            )
            bad_key_status, _ = harness.post(
                self.urls[v], harness.request_body(False), harness.request_headers("sk-sluice-not-a-key")
            )
            self.sent[v]["requests"] += 2
            if denied_status != 403 or bad_key_status != 401:
                raise RuntimeError(
                    f"governance is not on in gateway {v}: disallowed model -> {denied_status} {denied[:200]!r}, "
                    f"unknown key -> {bad_key_status}"
                )
            got = limit_headers[v]
            limited = "x-sluice-budget-id" in got and "x-ratelimit-limit-requests" in got
            if limited != (v not in ("plain", "nometrics")):
                raise RuntimeError(
                    f"gateway {v}: budget/rate-limit headers {'present' if limited else 'missing'} ({got}); "
                    f"{'no limit should' if v == 'plain' else 'budgets and rate limits should'} apply to the key"
                )
            variants[v] = {
                "disallowed_model_status": denied_status,
                "unknown_key_status": bad_key_status,
                "limit_headers": got,
            }
        if self.redis is not None:
            keys = self.redis.dbsize()
            if keys == 0:
                raise RuntimeError(f"gateway redis: no counter keys in {self.redis.url} after the wire check")
            variants["redis"]["redis_keys_after_wire_check"] = keys
        self.sanity = {"byte_exact_json_and_stream": True, "gateways": variants}

    def measure(
        self, target: str, mode: str, kind: str, requests: int, concurrency: int, rnd: int, rate: float | None = None
    ) -> dict[str, Any]:
        proxy = self.proxy_procs.get(target)
        watched: dict[str, Any] = {"upstream": self.upstream, "loadgen": self.loadgen.proc}
        if proxy is not None:
            watched["proxy"] = proxy
        if self.redis is not None and self.redis.proc is not None:
            watched["redis"] = self.redis.proc  # for every target: the others show Redis's idle background
        before = {k: p.cpu_s() for k, p in watched.items()}
        before_ps = {k: p.cpu_s_psutil() for k, p in watched.items()}
        res = self.loadgen.run(
            self.urls[target],
            stream=mode == "stream",
            requests=requests,
            concurrency=concurrency,
            expected_len=self.expected[mode],
            timeout_s=self.args.run_timeout,
            rate=rate,
        )
        at_end = proxy.cpu_s() if proxy is not None else 0.0
        settle_s = proxy.wait_idle() if proxy is not None else 0.0
        after = {k: p.cpu_s() for k, p in watched.items()}
        after_ps = {k: p.cpu_s_psutil() for k, p in watched.items()}
        if target in self.sent:
            self.sent[target]["requests"] += res["issued"]
            self.sent[target]["ok_200"] += res["ok"]
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
            print(
                f"  ! {label(target)} {mode}: {res['errors']} errors, e.g. {res['error_samples'][:2]}", file=sys.stderr
            )
        return run

    def warm_up(self) -> None:
        for target in self.targets:
            for mode in self.args.modes:
                run = self.measure(target, mode, "warmup", self.args.warmup, self.args.concurrency, 0)
                if run["ok"] == 0:
                    raise RuntimeError(f"warm-up of {label(target)} ({mode}) failed: {run['error_samples']}")

    def rounds(self) -> None:
        a = self.args
        width = max(len(label(t)) for t in self.targets)
        for rnd in range(1, a.rounds + 1):
            for mode in a.modes:
                k = (rnd - 1) % len(self.targets)
                order = self.targets[k:] + self.targets[:k]  # rotate who goes first: drifts and warm caches even out
                for target in order:
                    run = self.measure(target, mode, "loaded", a.requests, a.concurrency, rnd)
                    self.runs.append(run)
                    cpu = run["cpu_s"].get("proxy")
                    per_req = f", proxy CPU {cpu * 1e6 / run['ok']:.0f} µs/req" if cpu and run["ok"] else ""
                    if target == "redis" and "redis" in run["cpu_s"] and run["ok"]:
                        per_req += f", redis-server {run['cpu_s']['redis'] * 1e6 / run['ok']:.0f} µs/req"
                    print(
                        f"round {rnd}/{a.rounds} {mode:6} {label(target):{width}} c={a.concurrency}: {run['ok']} ok, "
                        f"{run['ok'] / run['elapsed_s']:.0f} req/s{per_req}",
                        flush=True,
                    )
                for target in reversed(order):
                    self.runs.append(self.measure(target, mode, "unloaded", a.probe_requests, 1, rnd))
                if a.paced_requests:
                    # Low, steady load (open loop): what a request waits for when nothing else is in flight, e.g.
                    # a group commit that lingers for company. Capped at 8 connections; at 50 req/s one is used.
                    for target in order:
                        run = self.measure(target, mode, "paced", a.paced_requests, 8, rnd, rate=a.paced_rate)
                        self.runs.append(run)
                    paced = [r for r in self.runs[-len(order) :] if r["lat_us"]]
                    print(
                        f"round {rnd}/{a.rounds} {mode:6} paced {a.paced_rate:g} req/s p50 ms: "
                        + ", ".join(f"{label(r['target'])} {percentile(r['lat_us'], 50) / 1000:.2f}" for r in paced),
                        flush=True,
                    )

    def finish_gateways(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Stop every gateway gracefully (request log and spend ledger drain on shutdown), then count, per variant,
        its request log and its spend ledger."""
        self.rss_end = {name: p.rss_mib() for name, p in self.proxy_procs.items()}
        logs, ledgers = {}, {}
        self.audit: dict[str, Any] = {}
        self.store_writes: dict[str, Any] = {}
        for v in self.gateways:
            metrics_url = self.urls[v].replace("/v1/messages", "/metrics")
            self.store_writes[v] = store_writes(metrics_url, self.sent[v]["requests"])
            code = self.proxy_procs[v].stop()
            logs[v] = request_log_check(self.dbs[v], self.sent[v]["requests"], code, self.args.deltas)
            ledgers[v] = spend_ledger_check(self.dbs[v], self.sent[v]["ok_200"], self.args.deltas)
            if v in ("full", "audited"):
                self.audit[v] = audit_check(self.dbs[v], logs[v]["status_200"], v == "full")
        return logs, ledgers


def store_writes(metrics_url: str, requests: int) -> dict[str, Any]:
    """The gateway's hot-write transactions (request log, ledger, audit) from its /metrics, before it stops:
    commits per request and rows per commit say how well they batch (store.linger_ms, group commit)."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as answer:
            text = answer.read().decode()
    except urllib.error.URLError:  # metrics off (the nometrics variant)
        text = ""
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("sluice_store_commits_total", "sluice_store_rows_total"):
            values[name] = int(float(value))
    commits, rows = values.get("sluice_store_commits_total", 0), values.get("sluice_store_rows_total", 0)
    return {
        "commits": commits,
        "rows": rows,
        "requests": requests,
        "commits_per_request": commits / requests if requests else None,
        "rows_per_commit": rows / commits if commits else None,
    }


def audit_check(db: Path, requests: int, signed: bool) -> dict[str, Any]:
    """The audit chain holds a record per successful request (at least), and (full) the signed checkpoints file
    vouches for its head."""
    with sqlite3.connect(db) as conn:
        rows, requests_sealed, last = conn.execute(
            "SELECT COUNT(*), SUM(kind = 'request'), MAX(seq) FROM audit_log"
        ).fetchone()
    out: dict[str, Any] = {"rows": int(rows or 0), "request_records": int(requests_sealed or 0), "last_seq": last}
    out["complete"] = out["request_records"] >= requests
    if signed:
        path = db.parent / "audit.checkpoints.jsonl"
        lines = path.read_bytes().splitlines() if path.exists() else []
        import orjson

        head = orjson.loads(lines[-1])["seq"] if lines else None
        out.update(checkpoints=len(lines), last_checkpoint_seq=head)
        out["complete"] = out["complete"] and head == last
    return out


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


def spend_ledger_check(db: Path, expected_ok: int, deltas: int) -> dict[str, Any]:
    """One ledger row per successful request: as many rows as 200s sent and logged, each the same request id and
    cost as its request-log row, with the upstream's tokens, the key and its team; none for a refused request."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(cost_pico > 0), SUM(tokens = ?), "
            "SUM(virtual_key_id = 'vk-bench' AND team_id = 'team-bench'), SUM(cost_pico) FROM spend_ledger",
            (12 + deltas,),
        ).fetchone()
        (logged_200,) = conn.execute("SELECT COUNT(*) FROM request_log WHERE status = 200").fetchone()
        (matched,) = conn.execute(
            "SELECT COUNT(*) FROM spend_ledger s JOIN request_log r ON r.request_id = s.request_id "
            "WHERE r.status = 200 AND r.cost_pico = s.cost_pico"
        ).fetchone()
    rows, distinct, priced, metered, scoped, cost_pico = (int(v or 0) for v in row)
    return {
        "db": str(db),
        "expected_rows": expected_ok,
        "request_log_200": int(logged_200),
        "rows": rows,
        "distinct_request_ids": distinct,
        "priced": priced,
        "metered": metered,
        "key_and_team": scoped,
        "matched_to_request_log": int(matched),
        "cost_usd": cost_pico / 1e12,
        "complete": rows == expected_ok == int(logged_200) == distinct == priced == metered == scoped == int(matched),
    }


# --------------------------------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------------------------------


def _per_req(r: dict[str, Any], who: str) -> float:
    return float(r["cpu_s"][who] * 1e6 / r["ok"])


def summarise(runs: list[dict[str, Any]], modes: list[str], targets: list[str], gateways: list[str]) -> dict[str, Any]:
    proxies = ["baseline", *gateways]
    summary: dict[str, Any] = {}
    for mode in modes:
        per_target: dict[str, Any] = {}
        loaded_by: dict[str, list[dict[str, Any]]] = {}
        for target in targets:
            loaded = [r for r in runs if r["mode"] == mode and r["target"] == target and r["kind"] == "loaded"]
            probe = [r for r in runs if r["mode"] == mode and r["target"] == target and r["kind"] == "unloaded"]
            paced = [r for r in runs if r["mode"] == mode and r["target"] == target and r["kind"] == "paced"]
            loaded_by[target] = loaded
            qlat = [v for r in paced for v in r["lat_us"]]
            lat = [v for r in loaded for v in r["lat_us"]]
            ttfb = [v for r in loaded for v in r["ttfb_us"]]
            plat = [v for r in probe for v in r["lat_us"]]
            pttfb = [v for r in probe for v in r["ttfb_us"]]
            ok = sum(r["ok"] for r in loaded)
            t: dict[str, Any] = {
                "requests_ok": ok,
                "errors": sum(r["errors"] for r in loaded + probe + paced),
                "rps": spread([r["ok"] / r["elapsed_s"] for r in loaded if r["elapsed_s"] > 0]),
                "p50_ms": ms(percentile(lat, 50)),
                "p99_ms": ms(percentile(lat, 99)),
                "ttfb_p50_ms": ms(percentile(ttfb, 50)),
                "unloaded_p50_ms": ms(percentile(plat, 50)),
                "unloaded_p99_ms": ms(percentile(plat, 99)),
                "unloaded_ttfb_p50_ms": ms(percentile(pttfb, 50)),
                "paced_p50_ms": ms(percentile(qlat, 50)),
                "paced_p99_ms": ms(percentile(qlat, 99)),
                "paced_cpu_us_per_req": spread([_per_req(r, "proxy") for r in paced if r["ok"]])
                if target in proxies
                else None,
                "upstream_plus_loadgen_core_util": spread(
                    [(r["cpu_s"]["upstream"] + r["cpu_s"]["loadgen"]) / r["elapsed_s"] for r in loaded]
                ),
            }
            if target in proxies:
                t["cpu_us_per_req"] = spread([_per_req(r, "proxy") for r in loaded if r["ok"]])
                t["cpu_us_per_req_pooled"] = (sum(r["cpu_s"]["proxy"] for r in loaded) * 1e6 / ok) if ok else None
                t["cpu_us_per_req_pooled_psutil"] = (
                    (sum(r["cpu_s_psutil"]["proxy"] for r in loaded) * 1e6 / ok) if ok else None
                )
                t["proxy_core_util"] = spread([r["proxy_cpu_s_during_load"] / r["elapsed_s"] for r in loaded])
            if any("redis" in r["cpu_s"] for r in loaded):
                t["redis_cpu_us_per_req"] = spread([_per_req(r, "redis") for r in loaded if r["ok"]])
            per_target[target] = t
        direct = per_target["direct"]
        for target in proxies:
            t = per_target[target]
            for key in (
                "p50_ms",
                "p99_ms",
                "ttfb_p50_ms",
                "unloaded_p50_ms",
                "unloaded_p99_ms",
                "unloaded_ttfb_p50_ms",
                "paced_p50_ms",
                "paced_p99_ms",
            ):
                t["added_" + key] = sub(t[key], direct[key])
            t["paced_p50_over_baseline_ms"] = sub(t["paced_p50_ms"], per_target["baseline"]["paced_p50_ms"])
        base = per_target["baseline"]["cpu_us_per_req"]["median"]
        # Redis's own background (serverCron, other clients) while no redis-variant load runs, per second.
        idle = [r for tg in targets if tg != "redis" for r in loaded_by[tg] if "redis" in r["cpu_s"]]
        idle_s = sum(r["elapsed_s"] + r["settle_s"] for r in idle)
        redis_idle_us_per_s = sum(r["cpu_s"]["redis"] for r in idle) * 1e6 / idle_s if idle_s else None
        plain_by_round = {r["round"]: r for r in loaded_by.get("plain", []) if r["ok"]}
        local_by_round = {r["round"]: r for r in loaded_by.get("local", []) if r["ok"]}
        variants: dict[str, Any] = {}
        for v in gateways:
            t = per_target[v]
            med = t["cpu_us_per_req"]["median"]
            runs_v = [r for r in loaded_by[v] if r["ok"]]
            paired = [(r, plain_by_round[r["round"]]) for r in runs_v if r["round"] in plain_by_round]
            with_redis = [(r, p) for r, p in paired if "redis" in r["cpu_s"] and "redis" in p["cpu_s"]]
            plain_med = per_target["plain"]["cpu_us_per_req"]["median"] if "plain" in per_target else None
            entry: dict[str, Any] = {
                "cpu_us_per_req": t["cpu_us_per_req"],
                "cpu_ratio_vs_baseline": med / base if med and base else None,
                # Per round, variant minus plain (the two ran in the same round, moments apart): median, min-max.
                "governance_cost_us": spread([_per_req(r, "proxy") - _per_req(p, "proxy") for r, p in paired])
                if v != "plain"
                else None,
                "governance_cost_us_diff_of_medians": sub(med, plain_med) if v != "plain" else None,
            }
            if v == "redis":
                entry["redis_cpu_us_per_req"] = t.get("redis_cpu_us_per_req")
                entry["redis_idle_cpu_us_per_s"] = redis_idle_us_per_s
                entry["redis_cpu_us_per_req_net_of_idle"] = (
                    spread(
                        [
                            _per_req(r, "redis") - redis_idle_us_per_s * (r["elapsed_s"] + r["settle_s"]) / r["ok"]
                            for r in runs_v
                        ]
                    )
                    if redis_idle_us_per_s is not None and runs_v and "redis" in runs_v[0]["cpu_s"]
                    else None
                )
                entry["gateway_plus_redis_cpu_us_per_req"] = (
                    spread([_per_req(r, "proxy") + _per_req(r, "redis") for r in runs_v])
                    if runs_v and "redis" in runs_v[0]["cpu_s"]
                    else None
                )
                # What moving the same limits from the gateway process to Redis costs, per round (the two ran
                # moments apart): gateway only, and gateway + redis-server (whose idle background cancels out).
                vs_local = [(r, local_by_round[r["round"]]) for r in runs_v if r["round"] in local_by_round]
                entry["extra_vs_local_us"] = (
                    spread([_per_req(r, "proxy") - _per_req(p, "proxy") for r, p in vs_local]) if vs_local else None
                )
                entry["extra_vs_local_incl_redis_us"] = (
                    spread(
                        [
                            _per_req(r, "proxy") + _per_req(r, "redis") - _per_req(p, "proxy") - _per_req(p, "redis")
                            for r, p in vs_local
                            if "redis" in r["cpu_s"] and "redis" in p["cpu_s"]
                        ]
                    )
                    if vs_local
                    else None
                )
                # Both sides of the pair carry Redis's idle background, so it cancels out.
                entry["governance_cost_incl_redis_us"] = (
                    spread(
                        [
                            _per_req(r, "proxy") + _per_req(r, "redis") - _per_req(p, "proxy") - _per_req(p, "redis")
                            for r, p in with_redis
                        ]
                    )
                    if with_redis
                    else None
                )
            for key in (
                "added_p50_ms",
                "added_p99_ms",
                "added_ttfb_p50_ms",
                "added_unloaded_ttfb_p50_ms",
                "added_paced_p50_ms",
                "paced_p50_over_baseline_ms",
            ):
                entry[key] = t[key]
            variants[v] = entry
        summary[mode] = {"targets": per_target, "variants": variants}
    return summary


def verdicts(summary: dict[str, Any], gateways: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, s in summary.items():
        for v in gateways:
            ratio = s["variants"][v]["cpu_ratio_vs_baseline"]
            out[f"cpu_ratio_{mode}_{v}"] = {
                "variant": v,
                "mode": mode,
                "value": ratio,
                "target": f"<= {CPU_RATIO_TARGET}",
                "pass": ratio is not None and ratio <= CPU_RATIO_TARGET,
            }
    for mode, s in summary.items():
        for v in gateways:
            over = s["variants"][v]["paced_p50_over_baseline_ms"]
            if over is None:
                continue
            out[f"paced_p50_{mode}_{v}"] = {
                "variant": v,
                "mode": mode,
                "kind": "paced",
                "value": over,
                "over_direct": s["variants"][v]["added_paced_p50_ms"],
                "baseline_over_direct": s["targets"]["baseline"]["added_paced_p50_ms"],
                "target": f"<= {PACED_TARGET_MS}",
                "pass": over <= PACED_TARGET_MS,
            }
    if "stream" in summary:
        for v in gateways:
            gw = summary["stream"]["targets"][v]
            added = gw["added_unloaded_ttfb_p50_ms"]
            base = summary["stream"]["targets"]["baseline"]["added_unloaded_ttfb_p50_ms"]
            over = None if added is None or base is None else added - base
            out[f"ttfb_overhead_ms_{v}"] = {
                "variant": v,
                "value": over,
                "over_direct": added,
                "baseline_over_direct": base,
                "measured_at": "concurrency 1 (the latency the gateway adds to one request, without queueing)",
                "under_load_value": gw["added_ttfb_p50_ms"],
                "target": f"< {TTFB_TARGET_MS}",
                "pass": over is not None and over < TTFB_TARGET_MS,
            }
    return out


def fmt(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def fmt_spread(s: dict[str, float | None] | None, digits: int = 0, signed: bool = False) -> str:
    if not s or s.get("median") is None:
        return "—"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{f.format(s['median'])} ({f.format(s['min'])}…{f.format(s['max'])})"


def governance_tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The headline: per variant, what the gateway costs and what budgets and rate limits add."""
    out = []
    gateways = report["options"]["gateways"]
    has_redis = "redis" in gateways
    for mode, s in report["summary"].items():
        head = ["target", "CPU µs/req (min…max)", "× baseline", "governance µs/req (min…max)"]
        if has_redis:
            head += ["Redis µs/req", "gw+Redis governance µs/req"]
        head += ["+p50 ms", "+p99 ms"]
        if mode == "stream":
            head += ["+TTFB ms c=1", "+TTFB ms loaded"]
        base = s["targets"]["baseline"]
        row = ["baseline", fmt_spread(base["cpu_us_per_req"]), "1.00", ""]
        if has_redis:
            row += ["", ""]
        row += [fmt(base["added_p50_ms"]), fmt(base["added_p99_ms"])]
        if mode == "stream":
            row += [fmt(base["added_unloaded_ttfb_p50_ms"], 3), fmt(base["added_ttfb_p50_ms"])]
        rows = [row]
        for v in gateways:
            e = s["variants"][v]
            row = [
                label(v),
                fmt_spread(e["cpu_us_per_req"]),
                fmt(e["cpu_ratio_vs_baseline"]),
                "(reference)" if v == "plain" else fmt_spread(e["governance_cost_us"], signed=True),
            ]
            if has_redis:
                row += (
                    [
                        fmt_spread(e.get("redis_cpu_us_per_req")),
                        fmt_spread(e.get("governance_cost_incl_redis_us"), signed=True),
                    ]
                    if v == "redis"
                    else ["", ""]
                )
            row += [fmt(e["added_p50_ms"]), fmt(e["added_p99_ms"])]
            if mode == "stream":
                row += [fmt(e["added_unloaded_ttfb_p50_ms"], 3), fmt(e["added_ttfb_p50_ms"])]
            rows.append(row)
        out.append((f"Governance cost, {mode} (loaded, concurrency {report['options']['concurrency']})", head, rows))
    return out


def tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    c = report["options"]["concurrency"]
    targets = ["direct", "baseline", *report["options"]["gateways"]]
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
        for target in targets:
            t = s["targets"][target]
            proxy = target != "direct"
            cpu = t.get("cpu_us_per_req") or {}
            row = [
                label(target),
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
        for target in targets:
            t = s["targets"][target]
            proxy = target != "direct"
            row = [
                label(target),
                fmt(t["unloaded_p50_ms"], 3),
                fmt(t["unloaded_p99_ms"], 3),
                fmt(t.get("added_unloaded_p50_ms"), 3) if proxy else "",
                fmt(t.get("added_unloaded_p99_ms"), 3) if proxy else "",
            ]
            if mode == "stream":
                row += [fmt(t["unloaded_ttfb_p50_ms"], 3), fmt(t.get("added_unloaded_ttfb_p50_ms"), 3) if proxy else ""]
            rows.append(row)
        out.append((f"{mode}, unloaded (concurrency 1)", head, rows))
        if s["targets"]["direct"].get("paced_p50_ms") is None:
            continue
        head = ["target", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "+p50 over baseline ms", "CPU µs/req"]
        rows = []
        for target in targets:
            t = s["targets"][target]
            proxy = target != "direct"
            rows.append(
                [
                    label(target),
                    fmt(t["paced_p50_ms"], 3),
                    fmt(t["paced_p99_ms"], 3),
                    fmt(t.get("added_paced_p50_ms"), 3) if proxy else "",
                    fmt(t.get("added_paced_p99_ms"), 3) if proxy else "",
                    fmt(t.get("paced_p50_over_baseline_ms"), 3) if proxy and target != "baseline" else "",
                    fmt_spread(t.get("paced_cpu_us_per_req")) if proxy else "",
                ]
            )
        rate = report["options"]["paced_rate"]
        out.append((f"{mode}, low load (paced at {rate:g} req/s, open loop; latency pooled over rounds)", head, rows))
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
    for v in report["verdicts"].values():
        mark = "PASS" if v["pass"] else "FAIL"
        if v.get("kind") == "paced":
            lines.append(
                f"{label(v['variant'])} +p50 at {report['options']['paced_rate']:g} req/s ({v['mode']}) over the "
                f"baseline: {fmt(v['value'])} ms (target {v['target']} ms) {mark}; over direct "
                f"{fmt(v['over_direct'])} ms (baseline over direct {fmt(v['baseline_over_direct'])} ms)"
            )
        elif "mode" in v:
            lines.append(
                f"{label(v['variant'])}/baseline CPU µs per request ({v['mode']}): "
                f"{fmt(v['value'])} (target {v['target']}) {mark}"
            )
        else:
            lines.append(
                f"{label(v['variant'])} stream TTFB p50 at concurrency 1 over the baseline's: "
                f"{fmt(v['value'], 3)} ms (target {v['target']} ms) {mark}; over direct {fmt(v['over_direct'], 3)} ms "
                f"(baseline over direct {fmt(v['baseline_over_direct'], 3)} ms); under load (concurrency "
                f"{report['options']['concurrency']}, over direct): {fmt(v['under_load_value'], 2)} ms"
            )
    for mode, s in report["summary"].items():
        for v, e in s["variants"].items():
            if v == "plain" or (e["governance_cost_us"] or {}).get("median") is None:
                continue
            line = (
                f"governance cost ({mode}), {label(v)} minus gateway plain: "
                f"{fmt_spread(e['governance_cost_us'], 1, signed=True)} µs/req of gateway CPU"
            )
            if e.get("governance_cost_incl_redis_us"):
                line += (
                    f", {fmt_spread(e['governance_cost_incl_redis_us'], 1, signed=True)} µs/req with redis-server's "
                    f"CPU ({fmt_spread(e['redis_cpu_us_per_req'], 1)} µs/req in redis-server)"
                )
            lines.append(line)
            if e.get("extra_vs_local_us"):
                lines.append(
                    f"redis backend vs local ({mode}), same limits: gateway "
                    f"{fmt_spread(e['extra_vs_local_us'], 1, signed=True)} µs/req, gateway + redis-server "
                    f"{fmt_spread(e.get('extra_vs_local_incl_redis_us'), 1, signed=True)} µs/req"
                )
    for v, log in report["request_log"].items():
        lines.append(
            f"{label(v)} request log: {log['rows']} rows in SQLite for {log['expected_rows']} requests "
            f"({log['status_200']} x 200, {log['status_403']} x 403, {log['status_401']} x 401; "
            f"{log['metered_200']} metered, {log['priced_200']} priced, {log['streamed']} streamed; "
            f"spill lines {log['spill_file_lines']}) -> {'complete' if log['complete'] else 'INCOMPLETE'}"
        )
    for v, aud in report.get("audit", {}).items():
        lines.append(
            f"{label(v)} audit chain: {aud['rows']} records ({aud['request_records']} request records)"
            + (
                f", {aud['checkpoints']} signed checkpoint(s), the last at record {aud['last_checkpoint_seq']} "
                f"of {aud['last_seq']}"
                if "checkpoints" in aud
                else ""
            )
            + f" -> {'complete' if aud['complete'] else 'INCOMPLETE'}"
        )
    for v, w in report.get("store_writes", {}).items():
        if not w["commits"]:
            continue
        lines.append(
            f"{label(v)} store writes: {w['commits']} commits, {w['rows']} rows for {w['requests']} requests "
            f"({fmt(w['commits_per_request'], 3)} commits per request, {fmt(w['rows_per_commit'], 1)} rows per commit)"
        )
    for v, led in report["spend_ledger"].items():
        lines.append(
            f"{label(v)} spend ledger: {led['rows']} rows for {led['expected_rows']} successful requests "
            f"({led['request_log_200']} x 200 in the request log; {led['matched_to_request_log']} with the same id "
            f"and cost there, {led['priced']} priced, {led['metered']} metered, {led['key_and_team']} with key and "
            f"team; ${led['cost_usd']:.4f} in all) -> {'one row per success' if led['complete'] else 'MISMATCH'}"
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    m, o = report["machine"], report["options"]
    targets = ["direct", "baseline", *o["gateways"]]
    proxies = ["baseline", *o["gateways"]]
    redis = report.get("redis")
    out = [
        "# Sluice proxy overhead and governance cost",
        "",
        f"Run {report['date']} on {m['nproc']} cores ({m['cpu_model']}), Python {m['python']}, "
        f"sluice commit {m['git_commit'] or 'unknown'}{' (dirty tree)' if m.get('git_dirty') else ''}. "
        f"Load average at start {m['loadavg_start']}, at end {m['loadavg_end']}. Took {report['duration_s']:.0f} s.",
        "",
        f"Options: {o['requests']} requests per loaded run at concurrency {o['concurrency']}, {o['rounds']} "
        f"interleaved rounds, {o['probe_requests']} sequential probe requests per round and target, "
        f"{o['warmup']} warm-up requests, {o['deltas']} text deltas per stream{', quick' if o['quick'] else ''}.",
        "",
        "Gateways: `sluice serve` as shipped, one process per variant, each with its own SQLite store; governance "
        "on in all (virtual key in a team with a model allowlist, provider key, request log and spend ledger to "
        "SQLite):",
        "",
        *[f"- **{v}**: {VARIANT_TEXT[v]}" for v in o["gateways"]],
        "",
    ]
    if redis:
        out += [
            f"Redis: {redis['url']} (redis-server {redis['version']}, pid {redis['pid']}, cores "
            f"{redis['affinity']}, not pinned by the benchmark); database flushed at start "
            f"({redis['keys_flushed_at_start']} keys) and end ({redis['keys_after_run']} keys)."
            + (f" CPU not measured: {redis['cpu_note']}." if not redis["cpu_measured"] else ""),
            "",
        ]
    out += [f"Pinning: {report['pinning']}", "", "## Verdict", "", *[f"- {line}" for line in headline(report)], ""]
    for title, head, rows in governance_tables(report):
        out += [f"## {title}", "", render_md(head, rows), ""]
    out += [
        "CPU µs/req: median over rounds (min…max) of the proxy's user+system CPU from the start of a run until it "
        "is idle again, per successful request. × baseline: median / baseline's median. governance µs/req: per "
        "round, the variant's CPU µs/req minus gateway plain's in the same round (median, min…max): the CPU that "
        "budgets and rate limits add in the gateway. Redis µs/req: redis-server's CPU during the redis variant's "
        "runs per request (includes its idle background, "
        + (
            f"{fmt(report['summary'][o['modes'][0]]['variants']['redis']['redis_idle_cpu_us_per_s'], 0)} µs per "
            "second measured during the other targets' runs"
            if redis and "redis" in report["summary"][o["modes"][0]]["variants"]
            else "measured during the other targets' runs"
        )
        + "). gw+Redis governance µs/req: per round, (gateway + redis-server CPU) of the redis variant minus the "
        "same sum during gateway plain's run (the idle background cancels out). `+` latencies = proxy minus direct; "
        f"+TTFB c=1 minus the baseline's is judged (target < {TTFB_TARGET_MS} ms), loaded TTFB is mostly queueing.",
        "",
    ]
    for title, head, rows in tables(report):
        out += [f"## {title}", "", render_md(head, rows), ""]
    out += [
        "Columns: `+` = proxy minus direct (upstream hit without a proxy). CPU µs/req = user+system CPU time of the "
        "proxy process from the start of the run until it is idle again (so request-log and ledger batches written "
        "just after the last answer count) / successful requests (median over rounds, min–max). proxy core = share "
        "of one core the proxy used during the run. RSS after the whole run.",
        "",
        "Upstream + load generator core use (shows whether the client side, not the proxy, limits req/s): "
        + ", ".join(
            f"{mode}/{t}: {fmt(s['targets'][t]['upstream_plus_loadgen_core_util']['median'] * 100, 0)}%"
            for mode, s in report["summary"].items()
            for t in targets
        ),
        "",
        "CPU µs/req pooled over all rounds (sum of CPU / sum of requests), scheduler clock vs psutil cpu_times "
        "(10 ms ticks): "
        + ", ".join(
            f"{mode}/{t}: {fmt(s['targets'][t]['cpu_us_per_req_pooled'], 1)} vs "
            f"{fmt(s['targets'][t]['cpu_us_per_req_pooled_psutil'], 1)}"
            for mode, s in report["summary"].items()
            for t in proxies
        ),
        "",
        "Errors: "
        + ", ".join(
            f"{mode}/{t}: {s['targets'][t]['errors']}" for mode, s in report["summary"].items() for t in targets
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
    for pkg in ("sluice", "aiohttp", "uvicorn", "uvloop", "httptools", "orjson", "redis"):
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
        f"baseline and every gateway variant on core {cores['proxy']} (they never run load at the same time); "
        f"upstream on "
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
    bench = Bench(args, fleet, cores)
    try:
        bench.start()
        gateways = ", ".join(f"{v} {bench.proxy_procs[v].pid}" for v in bench.gateways)
        redis_pid = f", redis-server {bench.redis.pid} (not started here)" if bench.redis else ""
        print(
            f"processes: upstream {bench.upstream.pid}, baseline {bench.baseline.pid}, gateways {gateways}, "
            f"loadgen {bench.loadgen.proc.pid}{redis_pid}",
            flush=True,
        )
        bench.check_wire()
        bench.warm_up()
        bench.rounds()
        bench.loadgen.quit()
        request_log, spend_ledger = bench.finish_gateways()
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
        if bench.redis is not None:
            bench.redis.close()
        if not args.keep_tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    summary = summarise(bench.runs, args.modes, bench.targets, bench.gateways)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": time.monotonic() - started,
        "machine": machine,
        "options": {k: v for k, v in vars(args).items() if k not in ("out",)},
        "pinning": pinning_text(cores),
        "redis": bench.redis.describe() if bench.redis else None,
        "sanity": bench.sanity,
        "summary": summary,
        "rss_mib": {"start": bench.rss_start, "end": bench.rss_end},
        "request_log": request_log,
        "spend_ledger": spend_ledger,
        "audit": bench.audit,
        "store_writes": bench.store_writes,
        "runs": [{k: v for k, v in r.items() if k not in ("lat_us", "ttfb_us")} for r in bench.runs],
    }
    report["verdicts"] = verdicts(summary, bench.gateways)
    print()
    for title, head, rows in [*tables(report), *governance_tables(report)]:
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
