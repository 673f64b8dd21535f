"""Starts `sluice serve` as a real process on a free port, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    def __init__(self, config: dict[str, Any], tmp: Path, *, args: tuple[str, ...] = ()) -> None:
        self.tmp = tmp
        self.args = args  # more `sluice serve` options (--workers, --http, --drain-seconds)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.db = tmp / "gateway.db"
        self.config_path = tmp / "sluice.yaml"
        config = {
            "store": {"url": f"sqlite:///{self.db}"},
            **config,
            "request_log": {"spill_path": str(tmp / "spill.jsonl")},
        }
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("this gateway process is running already")
        cmd = [
            sys.executable,
            "-m",
            "sluice.cli.main",
            "serve",
            "--config",
            str(self.config_path),
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited:\n" + self.log_path.read_text())
            try:
                with urllib.request.urlopen(self.base_url + "/healthz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gateway did not become healthy:\n" + self.log_path.read_text())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    def output(self) -> str:
        return self.log_path.read_text()

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
