"""CPU cost of one /healthz and /readyz probe (cached, and a full round of checks on SQLite),
in-process, no network: `python -m bench.health_probe`."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from sluice.app import build_services
from sluice.http.health import Readiness, alive
from sluice.settings import parse_config


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-health-"))
    services = build_services(
        parse_config(
            {
                "store": {"url": f"sqlite:///{tmp / 's.db'}"},
                "request_log": {"spill_path": str(tmp / "spill")},
                "governance": {"spend_journal_path": str(tmp / "journal")},
            }
        )
    )
    await services.store.migrate()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: Any) -> None:
        return None

    scope = {"type": "http", "method": "GET", "path": "/readyz", "headers": []}
    routes: list[tuple[str, Any, int]] = [
        ("healthz", alive, 20_000),
        ("readyz, cached verdict", Readiness(services), 20_000),
        ("readyz, a round of checks each time", Readiness(services, ttl_s=0), 500),
    ]
    for name, route, n in routes:
        started = time.process_time()
        for _ in range(n):
            await route(scope, receive, send)
        print(f"{name}: {(time.process_time() - started) / n * 1e6:.1f} CPU us/probe (n={n})")
    await services.store.close()


if __name__ == "__main__":
    asyncio.run(main())
