"""Process plumbing shared by the benchmarks: starting, pinning, probing and always stopping the processes involved.

Every child is started with ``PR_SET_PDEATHSIG`` (Linux), so it is killed even if the benchmark itself dies hard, and
``Fleet.close()`` (run from a ``finally``) terminates, then kills, whatever is still running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
import psutil
import yaml

from bench import upstream

REPO = Path(__file__).resolve().parents[1]
MODEL = upstream.MODEL
DENIED_MODEL = "claude-opus-4-1-20250805"  # a real model name the bench key is not allowed to use
VIRTUAL_KEY = "sk-sluice-bench-0000000000000000000000"
PROVIDER_KEY = "sk-ant-bench-upstream-key-000000"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sluice_executable() -> str:
    beside = Path(sys.executable).parent / "sluice"
    if beside.exists():
        return str(beside)
    venv = REPO / ".venv" / "bin" / "sluice"
    if venv.exists():
        return str(venv)
    raise SystemExit("cannot find the `sluice` executable (expected beside this Python or in .venv/bin)")


# --------------------------------------------------------------------------------------------------------------------
# Core pinning
# --------------------------------------------------------------------------------------------------------------------


def plan_cores(pin: bool) -> dict[str, list[int] | None]:
    """Proxies (gateways and baseline, never busy at the same time) share a core of their own; the load generator and
    the upstream share the rest. With a single usable core nothing is pinned."""
    roles = ("proxy", "upstream", "loadgen", "orchestrator")
    if not pin or not hasattr(os, "sched_getaffinity"):
        return dict.fromkeys(roles)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return dict.fromkeys(roles)
    proxy, rest = cores[-1:], cores[:-1]
    if len(rest) >= 2:
        return {"proxy": proxy, "upstream": rest[:1], "loadgen": rest[1:], "orchestrator": rest[:1]}
    return {"proxy": proxy, "upstream": rest, "loadgen": rest, "orchestrator": rest}


def _child_setup(cores: list[int] | None) -> Callable[[], None]:
    def setup() -> None:
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if cores:
            os.sched_setaffinity(0, cores)

    return setup


# --------------------------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------------------------


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path, stop_timeout: float) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.ps = psutil.Process(popen.pid)
        self._clock: int | None = ((~popen.pid) << 3) | 2 if sys.platform == "linux" else None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_s(self) -> float:
        """User+system CPU seconds of the whole process (every thread, live or exited), to the nanosecond.

        psutil's cpu_times() counts in clock ticks (10 ms), too coarse for a one-second run; Linux also exposes the
        process's scheduler clock as the CPU-time clock id ``(~pid << 3) | 2``. Falls back to psutil elsewhere."""
        if self._clock is not None:
            try:
                return time.clock_gettime(self._clock)
            except OSError:
                self._clock = None
        return self.cpu_s_psutil()

    def wait_idle(self, window: float = 0.05, busy_share: float = 0.02, limit: float = 3.0) -> float:
        """Wait until the process uses less than ``busy_share`` of a core over ``window`` seconds (work it deferred,
        such as request-log batches, is then done and counted). Returns the seconds waited."""
        started = time.monotonic()
        last = self.cpu_s()
        while time.monotonic() - started < limit:
            time.sleep(window)
            now = self.cpu_s()
            if now - last < window * busy_share:
                break
            last = now
        return time.monotonic() - started

    def cpu_s_psutil(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss_mib(self) -> float:
        return float(self.ps.memory_info().rss) / (1024 * 1024)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, wait up to stop_timeout, then SIGKILL. Returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


class Fleet:
    """Owns every child process; ``close()`` stops them all (in reverse start order) and never raises."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cores: list[int] | None,
        stop_timeout: float = 5.0,
        stdin: int | None = None,
        stdout: int | IO[bytes] | None = None,
    ) -> Proc:
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("wb")
        popen = subprocess.Popen(
            list(argv),
            cwd=REPO,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_child_setup(cores),  # the orchestrator runs no threads
        )
        log.close()
        proc = Proc(name, popen, log_path, stop_timeout)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as exc:
                print(f"warning: could not stop {proc.name} (pid {proc.pid}): {exc}", file=sys.stderr)
                with contextlib.suppress(Exception):
                    proc.popen.kill()


def wait_healthy(proc: Proc, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not become healthy at {url}:\n{proc.log_tail()}")


def start_upstream(fleet: Fleet, port: int, deltas: int, cores: list[int] | None) -> Proc:
    argv = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--deltas", str(deltas)]
    proc = fleet.start("upstream", argv, cores=cores)
    wait_healthy(proc, f"http://127.0.0.1:{port}/healthz")
    return proc


def start_baseline(
    fleet: Fleet, port: int, upstream_url: str, cores: list[int] | None, wrap: Sequence[str] = (), timeout: float = 30
) -> Proc:
    """The bare aiohttp proxy; `wrap`: a command to run it under (valgrind)."""
    argv = [*wrap, sys.executable, "-m", "bench.baseline_proxy", "--port", str(port), "--upstream", upstream_url]
    proc = fleet.start("baseline", argv, cores=cores, stop_timeout=45.0 if wrap else 5.0)
    wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", timeout=timeout)
    return proc


GATEWAY_VARIANTS = ("plain", "local", "full", "redis", "audited", "nometrics")
# The full variant's checkpoint signing key (a fixed Ed25519 seed, base64): configured, not generated on first start.
CHECKPOINT_KEY = "YmVuY2gtY2hlY2twb2ludC1rZXktMDEyMzQ1Njc4OWE="
# Limits the benchmark can never reach: the point is their per-request cost, not a refusal.
BUDGET_USD = 1_000_000
TOKEN_LIMIT = 1_000_000_000_000
REQUEST_LIMIT = 1_000_000_000
MAX_CONCURRENT = 1000


def gateway_config(
    upstream_url: str, workdir: Path, variant: str = "plain", redis_url: str | None = None
) -> dict[str, Any]:
    """Governance on: a virtual key (in a team) with a model allowlist, a provider key, the request log to SQLite.

    ``plain``: no budget or rate limit applies to the key. ``local`` and ``redis`` add a daily key budget, a monthly
    team budget, a token and a request rate limit and a concurrency limit on the key, all far out of reach, with the
    counters in the gateway process (``local``) or in Redis at ``redis_url`` (``redis``). ``full`` is ``local`` plus
    the audit chain (every request sealed before its last byte) with signed checkpoints under a configured key: all
    of governance at once. The bench model is in the shipped price data, so the budgets bind (a model without a
    price would be refused under a budget)."""
    if variant not in GATEWAY_VARIANTS:
        raise ValueError(f"unknown gateway variant {variant!r}")
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1"},
        "providers": {
            "anthropic": {"base_url": upstream_url, "keys": [{"name": "bench-upstream", "value": PROVIDER_KEY}]}
        },
        "virtual_keys": [
            {
                "id": "vk-bench",
                "name": "Benchmark key",
                "value": VIRTUAL_KEY,
                "team_id": "team-bench",
                "provider_configs": [
                    {"provider": "anthropic", "allowed_models": [MODEL, "claude-haiku-4-5-20251001"]},
                ],
            }
        ],
        "request_log": {"spill_path": str(workdir / "requestlog.spill.jsonl")},
    }
    if variant == "plain":
        return config
    if variant == "nometrics":  # plain without the request metrics: their cost is plain minus this
        config["observability"] = {"metrics": {"enabled": False}}
        return config
    config["teams"] = [{"id": "team-bench", "name": "Benchmark team"}]
    config["budgets"] = [
        {"id": "bench-key-daily", "virtual_key_id": "vk-bench", "max_limit": BUDGET_USD, "reset_duration": "1d"},
        {
            "id": "bench-team-monthly",
            "team_id": "team-bench",
            "max_limit": BUDGET_USD,
            "reset_duration": "1M",
            "calendar_aligned": True,
        },
    ]
    config["rate_limits"] = [
        {
            "id": "bench-key-rl",
            "virtual_key_id": "vk-bench",
            "token_max_limit": TOKEN_LIMIT,
            "token_reset_duration": "1h",
            "request_max_limit": REQUEST_LIMIT,
            "request_reset_duration": "1m",
            "max_concurrent_requests": MAX_CONCURRENT,
        }
    ]
    config["governance"] = {"backend": "redis" if variant == "redis" else "local"}
    if variant in ("audited", "full"):
        config["audit"] = {"hmac_key": "bench-audit-key-0123456789abcdef"}
    if variant == "full":
        # Everything on at once: the audit chain with signed checkpoints under a configured key, kept beside the db.
        config["audit"].update(
            checkpoints=True,
            checkpoint_key=CHECKPOINT_KEY,
            checkpoint_path=str(workdir / "audit.checkpoints.jsonl"),
        )
    if variant == "redis":
        if not redis_url:
            raise ValueError("the redis variant needs a redis_url")
        config["governance"]["redis_url"] = redis_url
    return config


def launch_gateway(
    fleet: Fleet,
    port: int,
    upstream_url: str,
    cores: list[int] | None,
    *,
    variant: str = "plain",
    redis_url: str | None = None,
    name: str = "gateway",
    wrap: Sequence[str] = (),
) -> tuple[Proc, Path]:
    """Starts ``sluice serve`` exactly as an operator runs it, with the benchmark's generated config, in its own
    directory under the fleet's (config, SQLite db, spill file). Does not wait: see ``wait_healthy``. `wrap`: a
    command to run it under (valgrind: the console script is run by this interpreter)."""
    workdir = fleet.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "sluice-bench.yaml"
    config = gateway_config(upstream_url, workdir, variant, redis_url)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    db = workdir / "bench.db"
    argv = [
        *((*wrap, sys.executable) if wrap else ()),
        sluice_executable(),
        "serve",
        "--config",
        str(config_path),
        "--port",
        str(port),
        "--store",
        f"sqlite:///{db}",
        "--log-level",
        "warning",
    ]
    return fleet.start(name, argv, cores=cores, stop_timeout=45.0), db


def start_gateway(
    fleet: Fleet,
    port: int,
    upstream_url: str,
    cores: list[int] | None,
    *,
    variant: str = "plain",
    redis_url: str | None = None,
    name: str = "gateway",
) -> tuple[Proc, Path]:
    """``sluice serve`` exactly as an operator runs it, with the benchmark's generated config; waits until healthy."""
    proc, db = launch_gateway(fleet, port, upstream_url, cores, variant=variant, redis_url=redis_url, name=name)
    wait_healthy(proc, f"http://127.0.0.1:{port}/healthz")
    return proc, db


class ExternalProc:
    """A process the benchmark did not start (the Redis server): only its CPU clocks are read."""

    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid = pid
        self.ps = psutil.Process(pid)
        self._clock: int | None = ((~pid) << 3) | 2 if sys.platform == "linux" else None

    cpu_s = Proc.cpu_s
    cpu_s_psutil = Proc.cpu_s_psutil
    rss_mib = Proc.rss_mib


# --------------------------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------------------------


def request_body(stream: bool, model: str = MODEL) -> bytes:
    prompt = (
        "Summarise the following paragraph in one sentence. "
        + "The quick brown fox jumps over the lazy dog while the gateway counts tokens. " * 6
    )
    doc = {
        "model": model,
        "max_tokens": 1024,
        "system": "You are a concise assistant.",
        "messages": [{"role": "user", "content": prompt}],
        "stream": stream,
    }
    return orjson.dumps(doc)


def request_headers(key: str = VIRTUAL_KEY) -> dict[str, str]:
    return {"content-type": "application/json", "x-api-key": key, "anthropic-version": "2023-06-01"}


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    status, body, _ = post_full(url, body, headers)
    return status, body


def post_full(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and (lower-cased) response headers."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read(), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as err:
        return int(err.code), err.read(), {k.lower(): v for k, v in err.headers.items()}


class LoadGen:
    """The load generator process, driven over its stdin/stdout (see bench/loadgen.py)."""

    def __init__(self, fleet: Fleet, cores: list[int] | None) -> None:
        argv = [sys.executable, "-m", "bench.loadgen"]
        self.proc = fleet.start("loadgen", argv, cores=cores, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(
        self,
        url: str,
        *,
        stream: bool,
        requests: int,
        concurrency: int,
        expected_len: int,
        timeout_s: float,
        method: str = "POST",
        rate: float | None = None,
    ) -> dict[str, Any]:
        cmd = {
            "op": "run",
            "url": url,
            "method": method,
            "mode": "stream" if stream else "json",
            "body": request_body(stream).decode() if method == "POST" else "",
            "headers": request_headers(),
            "expected_len": expected_len,
            "requests": requests,
            "concurrency": concurrency,
            "timeout_s": timeout_s,
            "rate": rate,
        }
        stdin, stdout = self.proc.popen.stdin, self.proc.popen.stdout
        assert stdin is not None and stdout is not None
        stdin.write(orjson.dumps(cmd) + b"\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"load generator died:\n{self.proc.log_tail()}")
        result: dict[str, Any] = orjson.loads(line)
        if "fatal" in result:
            raise RuntimeError(f"load generator failed: {result['fatal']}")
        return result

    def quit(self) -> None:
        stdin = self.proc.popen.stdin
        if stdin is not None and self.proc.alive():
            with contextlib.suppress(OSError):
                stdin.write(b'{"op":"quit"}\n')
                stdin.flush()
