"""`sluice serve --workers N`: N gateway processes on one port.

Each worker binds the port itself with SO_REUSEPORT, so the kernel spreads new connections over
them and no process sits in between. The supervisor (this process) serves nothing: it starts the
first worker alone (it migrates the store and seeds the config, which must not race), then the
others; forwards SIGTERM/SIGINT (drain) and SIGHUP (reload, worker 0 first) to every worker; restarts a worker
that dies on its own; and exits 0 once every worker has drained and exited 0.

Limits stay exact across workers only with shared counters: `workers_refusal` in serve.py refuses
N > 1 on the local backend.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from sluice.settings import SluiceConfig

log = logging.getLogger("sluice.serve")
_RESTART_BACKOFF_S = 1.0
_RELOAD_STAGGER_S = 2.0


def _worker(index: int, ready: Queue[int], config_path: Path, host: str, port: int, options: dict[str, Any]) -> None:
    """One worker process (spawned, so it starts from a clean interpreter)."""
    from sluice.cli.serve import serve_process
    from sluice.http import serving
    from sluice.settings import load_config

    logging.basicConfig(
        level=options["log_level"].upper(), format=f"%(asctime)s %(levelname)s %(name)s[w{index}]: %(message)s"
    )
    cfg = own_files(load_config(config_path), index)
    sock = serving.bind(host, port, reuse_port=True)
    serve_process(
        cfg,
        sock,
        config_path=config_path,
        store_url=options["store_url"],
        log_level=options["log_level"],
        drain_s=options["drain_s"],
        banner_at=(host, port) if index == 0 else None,
        on_ready=lambda: ready.put(index),
    )


def own_files(cfg: SluiceConfig, index: int) -> SluiceConfig:
    """The config of worker `index`, with local files of its own: the spend journal and the
    request-log spill file are rewritten and replayed by one process, never shared. Worker 0 keeps
    the configured paths (what a single process uses); worker i appends `.w<i>` to the stem, and
    a restarted worker i replays its own file."""
    if index == 0:
        return cfg

    def mine(path: str) -> str:
        p = Path(path)
        return str(p.with_name(f"{p.stem}.w{index}{p.suffix}"))

    governance = cfg.governance.model_copy(update={"spend_journal_path": mine(cfg.governance.spend_journal_path)})
    request_log = cfg.request_log.model_copy(update={"spill_path": mine(cfg.request_log.spill_path)})
    return cfg.model_copy(update={"governance": governance, "request_log": request_log})


def _reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Holds the port (bound, not listening: it takes no connection) so that every worker binds
    the same one, also when the port asked for is 0."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock, int(sock.getsockname()[1])


class Supervisor:
    def __init__(self, config_path: Path, host: str, port: int, workers: int, options: dict[str, Any]) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.ready: Queue[int] = self.ctx.Queue()
        self.config_path = config_path
        self.host = host
        self.port = port
        self.count = workers
        self.options = options
        self.procs: dict[int, BaseProcess] = {}
        self.stopping = False
        self.signalled: list[int] = []

    def start(self, index: int) -> BaseProcess:
        proc = self.ctx.Process(
            target=_worker,
            args=(index, self.ready, self.config_path, self.host, self.port, self.options),
            name=f"sluice-worker-{index}",
        )
        proc.start()
        self.procs[index] = proc
        return proc

    def wait_ready(self, want: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        seen = 0
        while seen < want and time.monotonic() < deadline and not self.stopping:
            try:
                self.ready.get(timeout=0.2)
                seen += 1
            except queue.Empty:
                if any(not p.is_alive() for p in self.procs.values()):
                    return False
        return seen >= want

    def on_signal(self, signum: int, frame: object) -> None:
        self.signalled.append(signum)

    def reload(self) -> None:
        """SIGHUP: every worker re-reads the file (providers, routing and MCP from the file live in
        each process), but worker 0 first: it writes the file's keys and budgets to the store and
        records the changes, and the others, a moment later, find nothing left to change instead of
        racing it to write the same rows."""
        self.forward(signal.SIGHUP, only=[0])
        time.sleep(_RELOAD_STAGGER_S)
        self.forward(signal.SIGHUP, only=[i for i in self.procs if i != 0])

    def forward(self, signum: int, only: list[int] | None = None) -> None:
        for index, proc in self.procs.items():
            if only is not None and index not in only:
                continue
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self.on_signal)
        self.start(0)
        if not self.wait_ready(1, timeout=120):
            log.error("the first worker did not start; stopping")
            self.stopping = True
            self.forward(signal.SIGTERM)
            return self.reap(timeout=30) or 1
        for index in range(1, self.count):
            self.start(index)
        if not self.wait_ready(self.count - 1, timeout=120) and not self.stopping:
            log.error("not every worker started; stopping")
            self.stopping = True
            self.forward(signal.SIGTERM)
            self.reap(timeout=30)
            return 1
        log.warning("%d workers serving %s:%d", self.count, self.host, self.port)
        while True:
            while self.signalled:
                signum = self.signalled.pop(0)
                if signum == signal.SIGHUP:
                    self.reload()
                elif not self.stopping:
                    self.stopping = True
                    self.forward(signal.SIGTERM)
            if self.stopping:
                return self.reap(timeout=self.options["drain_s"] + 30)
            sentinels = [p.sentinel for p in self.procs.values()]
            multiprocessing.connection.wait(sentinels, timeout=0.2)
            for index, proc in list(self.procs.items()):
                if not proc.is_alive() and not self.stopping and not self.signalled:
                    log.error("worker %d exited with %s; restarting it", index, proc.exitcode)
                    time.sleep(_RESTART_BACKOFF_S)
                    self.start(index)

    def reap(self, timeout: float) -> int:
        """Waits for every worker to exit; kills what is left after `timeout`. 0 when all exited 0."""
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        code = 0
        for index, proc in self.procs.items():
            if proc.is_alive():
                log.error("worker %d did not exit in time: killed", index)
                proc.kill()
                proc.join(5)
                code = 1
            elif proc.exitcode != 0:
                log.error("worker %d exited with %s", index, proc.exitcode)
                code = 1
        return code


def supervise(
    config_path: Path,
    *,
    host: str,
    port: int,
    store_url: str | None,
    log_level: str,
    workers: int,
    drain_s: float,
) -> None:
    try:
        holder, port = _reserve_port(host, port)
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    options = {"store_url": store_url, "log_level": log_level, "drain_s": drain_s}
    try:
        code = Supervisor(config_path, host, port, workers, options).run()
    finally:
        holder.close()
    sys.exit(code)
