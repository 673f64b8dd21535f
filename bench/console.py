"""How fast are the console's pages on a large store? Seeds a store with N request-log rows (and as
many spend-ledger rows) over 30 days, K virtual keys, 50 teams with caps and a budget on every fifth
key, then renders every page in-process (the real app, the console mounted as in production,
signed in as an admin, a team lead and a developer) and reports the median and worst render time.

The first overview builds the spend roll-up from the whole log (a one-time cost, reported apart);
after that the refresh re-reads only the hours new rows were logged in (their marks).

Run: ``python -m bench.console [--rows 1000000] [--keys 5000] [--store sqlite|postgresql://...] [--repeat 5]``.
Writes ``bench/results/console.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from sluice.app import build_services
from sluice.http.server import SluiceASGI
from sluice.settings import parse_config
from sluice.storage.backends.sql_tables import spend_ledger, virtual_keys
from sluice.storage.records import ConfigObject, RequestLogEntry
from tests.admin.conftest import AUDIT_KEY, BOOTSTRAP
from tests.console.conftest import Browser, role_token

MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-5-mini", "gemini-2.5-pro", "gemini-2.5-flash"]
PROVIDERS = {"claude": "anthropic", "gpt": "openai", "gemini": "google"}
CLIENTS = ["claude-cli/2.0.14", "codex_cli_rs/0.50", "GeminiCLI/0.9", "opencode/0.15"]


async def seed(services: Any, rows: int, keys: int, now: datetime) -> None:
    rnd = random.Random(7)
    engine = services.store.engine
    key_rows = [
        {
            "id": f"vk-{i:05d}",
            "name": f"key {i}",
            "description": "",
            "key_hash": f"{i:064x}",
            "key_hint": "sk-bench",
            "team_id": f"team-{i % 50:02d}",
            "customer_id": None,
            "is_active": True,
            "expires_at": None,
            "revoked_at": None,
            "grants": [{"provider": "fake", "weight": 1.0, "allowed_models": []}],
            "fallbacks": [],
            "mcp": {"tools": [], "tool_groups": [], "resources": [], "prompts": []},
            "user_id": f"u-{i:05d}",
            "profile_id": None,
            "previous_key_hash": None,
            "previous_valid_until": None,
            "source": "api",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(keys)
    ]
    async with engine.begin() as conn:
        await conn.execute(insert(virtual_keys), key_rows)
    start = now - timedelta(days=30)
    span = (now - start).total_seconds()
    batch = 20_000
    for offset in range(0, rows, batch):
        log_rows, ledger_rows = [], []
        for n in range(offset, min(rows, offset + batch)):
            k = int(rnd.paretovariate(1.2)) % keys  # a few heavy spenders, a long tail
            model = MODELS[n % len(MODELS)]
            ts = start + timedelta(seconds=span * n / rows)
            deny = rnd.random() < 0.03
            cost = 0 if deny else rnd.randint(10**8, 5 * 10**10)
            rid = f"req-{n:08d}"
            log_rows.append(
                {
                    "request_id": rid,
                    "ts": ts,
                    "path": "/v1/messages",
                    "surface": "anthropic",
                    "status": 403 if deny else 200,
                    "decision": "deny" if deny else "allow",
                    "reason": "model not allowed" if deny else None,
                    "error_kind": "policy_model_denied" if deny else None,
                    "virtual_key_id": f"vk-{k:05d}",
                    "virtual_key_name": f"key {k}",
                    "team_id": f"team-{k % 50:02d}",
                    "customer_id": None,
                    "client": CLIENTS[k % len(CLIENTS)],
                    "session_id": f"sess-{k}-{n // 40}",
                    "user_id": None,
                    "provider": PROVIDERS[model.split("-")[0]],
                    "provider_key_name": "default",
                    "requested_model": model,
                    "model": model,
                    "stream": True,
                    "input_tokens": 1200,
                    "output_tokens": 300,
                    "cache_read_tokens": 0,
                    "cache_write_tokens": 0,
                    "cost_pico": cost,
                    "latency_ms": 850.0,
                    "ttfb_ms": 300.0,
                    "attempts": [],
                    "route": None,
                    "mcp_tools": [],
                }
            )
            if not deny:
                ledger_rows.append(
                    {
                        "request_id": rid,
                        "ts": ts,
                        "virtual_key_id": f"vk-{k:05d}",
                        "team_id": f"team-{k % 50:02d}",
                        "customer_id": None,
                        "cost_pico": cost,
                        "tokens": 1500,
                    }
                )
        # Through the request-log writer's own path, so the session ledger is filled as in production.
        await services.store.insert_requests([RequestLogEntry(**r) for r in log_rows])
        async with engine.begin() as conn:
            await conn.execute(insert(spend_ledger), ledger_rows)
    objects = [ConfigObject("team", f"team-{t:02d}", {"id": f"team-{t:02d}"}, "bench") for t in range(50)]
    objects += [
        ConfigObject(
            "budget",
            f"cap-{t:02d}",
            {"id": f"cap-{t:02d}", "team_id": f"team-{t:02d}", "max_limit": "5000", "reset_duration": "1M"},
            "bench",
        )
        for t in range(50)
    ]
    objects += [
        ConfigObject(
            "budget",
            f"b-{i:05d}",
            {"id": f"b-{i:05d}", "virtual_key_id": f"vk-{i:05d}", "max_limit": "100", "reset_duration": "1M"},
            "bench",
        )
        for i in range(0, keys, 5)
    ]
    await services.store.apply_objects(objects, [], "bench")


async def timed(browser: Browser, path: str, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        page = await browser.get(path)
        times.append((time.perf_counter() - t) * 1000)
        assert page.status == 200, (path, page.status, page.text[-300:])
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=5000)
    parser.add_argument("--store", default="sqlite")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sluice-console-bench-"))
    url = f"sqlite:///{tmp / 'bench.db'}" if args.store == "sqlite" else args.store
    config = {
        "store": {"url": url},
        "request_log": {"spill_path": str(tmp / "spill.jsonl")},
        "audit": {"hmac_key": AUDIT_KEY},
        "providers": {"fake": {}},
        "auth": {"guard": {"throttle": False}, "session": {"secure_cookie": False}},
    }
    services = build_services(parse_config(config))
    await services.start()
    from sluice.auth.admin_tokens import ApiTokenAuthenticator, BootstrapAuthenticator
    from tests.admin.conftest import RoleAuthenticator

    auth = [
        BootstrapAuthenticator(services.store, env={"SLUICE_ADMIN_TOKEN": BOOTSTRAP}),
        ApiTokenAuthenticator(services.store),
        RoleAuthenticator(),
    ]
    app = SluiceASGI(services, admin_authenticators=auth)
    now = datetime.now(UTC)
    try:
        t = time.perf_counter()
        await seed(services, args.rows, args.keys, now)
        seeded_s = time.perf_counter() - t
        admin, lead, dev = Browser(app), Browser(app), Browser(app)
        await admin.sign_in(BOOTSTRAP)
        await lead.sign_in(role_token("team-lead", "team-07", "u-lead"))
        await dev.sign_in(role_token("developer", "", "u-00001"))
        t = time.perf_counter()
        first = await admin.get("/console/")
        first_overview_ms = (time.perf_counter() - t) * 1000
        queries = app.mounts[1][1].state.console.queries  # type: ignore[attr-defined]
        building = queries._building
        t = time.perf_counter()
        if building is not None:
            await building  # the one-time build from the existing log, in the background
        build_s = time.perf_counter() - t
        assert building is None or b"being built" in first.body
        pages = {
            "overview (admin)": (admin, "/console/"),
            "overview (team lead)": (lead, "/console/"),
            "overview (developer)": (dev, "/console/"),
            "keys (admin, page 1 of 100)": (admin, "/console/keys"),
            "keys search": (admin, "/console/keys?q=vk-049"),
            "key detail": (admin, "/console/keys/vk-00001"),
            "teams (admin)": (admin, "/console/teams"),
            "requests": (admin, "/console/requests"),
            "requests ?team": (admin, "/console/requests?team=team-07"),
            "requests ?model&status": (admin, "/console/requests?model=gpt-5&status=403"),
            "requests ?session": (admin, "/console/requests?session=sess-1-100"),
            "requests ?key (rare)": (admin, "/console/requests?key=vk-04999"),
            "request detail": (admin, f"/console/requests/req-{args.rows // 2:08d}"),
            "audit": (admin, "/console/audit"),
            "sessions (last 24 h)": (admin, "/console/sessions"),
            "configuration": (admin, "/console/config"),
            "mcp": (admin, "/console/mcp"),
            "my usage (developer)": (dev, "/console/me"),
        }
        results = {name: await timed(b, path, args.repeat) for name, (b, path) in pages.items()}
        report = {
            "store": "sqlite" if args.store == "sqlite" else "postgresql",
            "rows": args.rows,
            "keys": args.keys,
            "seed_s": round(seeded_s, 1),
            "first_overview_ms (starts the roll-up's build)": round(first_overview_ms, 1),
            "rollup_build_s (background, one time)": round(build_s, 1),
            "pages": results,
            "when": now.isoformat(),
        }
        print(json.dumps(report, indent=2))
        out = Path(__file__).parent / "results" / f"console_{report['store']}.json"
        out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        await services.stop()


if __name__ == "__main__":
    asyncio.run(main())
