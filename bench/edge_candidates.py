"""The candidate HTTP servers that bench/edge_servers.py measures beside `sluice serve` (uvicorn):
the same app, built and started by the same code (`sluice.cli.serve.serve_process`), under
another server.

Run: ``python -m bench.edge_candidates --server h1|granian --config C --port P [--store URL]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
from pathlib import Path
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from bench import edge_h1
from sluice.cli.serve import serve_process
from sluice.http import serving
from sluice.settings import load_config


def _proxy_headers(app: Any) -> Any:
    # What uvicorn applies by default (X-Forwarded-For from 127.0.0.1), so every server does the same work.
    return ProxyHeadersMiddleware(app, trusted_hosts=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"))


async def run_h1(
    app: Any, sock: socket.socket, stop: asyncio.Event, *, drain_s: float, log_level: str, on_ready: serving.Ready
) -> None:
    await edge_h1.serve(_proxy_headers(app), sock, stop, drain_s=drain_s, on_ready=on_ready)


async def run_granian(
    app: Any, sock: socket.socket, stop: asyncio.Event, *, drain_s: float, log_level: str, on_ready: serving.Ready
) -> None:
    """granian's embedded server (ASGI, its Rust runtime on one thread, callbacks on our loop).
    It binds its own socket: the one given is closed and its address reused."""
    from granian.constants import Interfaces
    from granian.server.embed import Server

    host, port = sock.getsockname()[:2]
    sock.close()
    server = Server(_proxy_headers(app), address=host, port=port, interface=Interfaces.ASGI, log_enabled=False)
    server.workers_kill_timeout = max(1, round(drain_s))
    serving_task = asyncio.ensure_future(server.serve())
    await asyncio.sleep(0.5)  # the embedded server exposes no start-up event
    if not serving_task.done():
        on_ready()
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([serving_task, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        server.stop()
    await serving_task


RUNNERS = {"h1": run_h1, "granian": run_granian, "uvicorn": serving.run_uvicorn}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", choices=sorted(RUNNERS), required=True)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--store")
    p.add_argument("--log-level", default="warning")
    args = p.parse_args()
    logging.basicConfig(level=args.log_level.upper())
    cfg = load_config(args.config)
    sock = serving.bind(cfg.server.host, args.port, reuse_port=False)
    serve_process(
        cfg,
        sock,
        config_path=args.config,
        store_url=args.store,
        log_level=args.log_level,
        drain_s=cfg.server.drain_seconds,
        banner_at=None,
        runner=RUNNERS[args.server],
    )


if __name__ == "__main__":
    main()
