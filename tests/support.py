"""Runs a real gateway (uvicorn + the Sluice ASGI app) on a free 127.0.0.1 port in a thread, so
tests can drive it with the official synchronous SDKs."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvicorn

from sluice.app import Services, build_services
from sluice.http.server import SluiceASGI
from sluice.settings import SluiceConfig, parse_config


def free_port_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class GatewayThread:
    def __init__(self, config: dict[str, Any] | SluiceConfig, tmp_path: Path, *, port: int = 0) -> None:
        if isinstance(config, dict):
            config = dict(config)
            config.setdefault("store", {"url": f"sqlite:///{tmp_path / 'sluice.db'}"})
            config.setdefault("request_log", {"spill_path": str(tmp_path / "spill.jsonl")})
            config = parse_config(config)
        self.config = config
        self.services: Services = build_services(config)
        self._loop = asyncio.new_event_loop()
        self._sock = free_port_socket(port)  # a chosen port when the config must name it (SSO)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(
            SluiceASGI(self.services), lifespan="on", log_level="warning", access_log=False, http="httptools"
        )
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._server.serve(sockets=[self._sock]))

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        for _ in range(3000):  # 30 s: the 2-core CI machine is shared, and start-up lists MCP servers
            if self._server.started:
                return self
            if not self._thread.is_alive():
                raise RuntimeError("gateway failed to start")
            threading.Event().wait(0.01)
        raise RuntimeError("gateway did not start in 30 s")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def request_log(self) -> list[dict[str, Any]]:
        async def fetch() -> list[dict[str, Any]]:
            await self.services.recorder.flush()
            return await self.services.store.recent_requests(1000)

        return list(self.call(fetch()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
