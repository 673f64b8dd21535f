"""What a gateway sign-in token costs the request path, with the token cache and without, in the
same run.

    python -m bench.signin_token [--store URL] [--requests 2000] [--rounds 10]

One person is signed in (an active grant, their profile's key). `GatewaySignin.key_for` (what the
model surfaces, /v1/models, /mcp, /managed/settings and the OTLP receiver call for an `sgw.` bearer)
is run `--requests` times per round, rounds alternating between the cache on
(`token_cache_ttl_s: 5`) and off (0: the grant and the key read from the store each time, as
before the cache), in one process on one store. The same is done for a whole request through the
gateway's ASGI app in process: `GET /v1/models` with the token (the edge, the auth guard, the
token check, the person's model list, the answer), which needs no provider, so every microsecond
counted is the gateway's. Reported: CPU microseconds per call (process
time: this process is the gateway's), the minimum and median over rounds, and the ratio. SQLite by
default; `--store postgresql://...` measures PostgreSQL (the reads then leave the process, so the
CPU saved is the driver's and SQLAlchemy's, not the database's). Written to
bench/results/signin_token.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sluice.app import build_services
from sluice.auth.directory import USER
from sluice.gateway_signin.service import REFRESH_PREFIX, digest, new_user_code
from sluice.http.server import SluiceASGI
from sluice.settings import parse_config
from sluice.storage.grants import GatewayGrant

RESULTS = Path(__file__).resolve().parent / "results"


def config(tmp: Path, store: str | None) -> dict[str, Any]:
    return {
        "store": {"url": store or f"sqlite:///{tmp / 'bench.db'}"},
        "request_log": {"spill_path": str(tmp / "spill.jsonl")},
        "governance": {"spend_journal_path": str(tmp / "journal.jsonl")},
        "audit": {
            "hmac_key": "k" * 32,
            "checkpoint_path": str(tmp / "cp.jsonl"),
            "checkpoint_key_path": str(tmp / "cp.key"),
        },
        "access_profiles": [{"id": "developers", "groups": ["engineering"], "provider_configs": []}],
        "auth": {
            "oidc": {
                "issuer": "https://idp.example.com",
                "client_id": "sluice",
                "client_secret": "client-secret-0123456789",
                "redirect_uri": "https://sluice.example.com/auth/callback",
            },
            "session": {"secret": "session-secret-0123456789"},
            "gateway_signin": {"public_url": "https://sluice.example.com"},
        },
    }


async def run(store: str | None, requests: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(parse_config(config(Path(tmp), store)))
        await services.start()
        try:
            signin = services.identity.gateway
            assert signin is not None
            uid = f"bench-{secrets.token_hex(4)}"
            await services.identity.directory.put(
                USER, uid, {"userName": uid, "sluice:idpGroups": ["engineering"]}, "b"
            )
            key, _ = await services.identity.directory.sync_key(uid, "bench", extra_groups=["engineering"])
            assert key is not None
            now = time.time()
            refresh = f"{REFRESH_PREFIX}b.{secrets.token_urlsafe(8)}"
            grant = GatewayGrant(
                secrets.token_hex(8), digest(secrets.token_urlsafe(16)), new_user_code(), "active", now, now + 86400,
                user_id=uid, key_id=key.id, refresh_hash=digest(refresh),
            )  # fmt: skip
            await services.store.create_grant(grant)
            token = signin.issue(grant, refresh, now).access_token
            app = SluiceASGI(services)
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/v1/models",
                "query_string": b"",
                "headers": [(b"authorization", f"Bearer {token}".encode()), (b"anthropic-version", b"2023-06-01")],
                "client": ("127.0.0.1", 5000),
            }
            statuses: list[int] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            async def check() -> None:
                await signin.key_for(token)

            async def request() -> None:
                await app(scope, receive, send)

            samples: dict[str, list[float]] = {
                "cached": [], "uncached": [], "request_cached": [], "request_uncached": [],
            }  # fmt: skip
            for _ in range(2):  # warm both paths
                for ttl in (5.0, 0.0):
                    signin.tokens.ttl_s = ttl
                    for _ in range(200):
                        await check()
                        await request()
            for _ in range(rounds):
                for what, step in (("", check), ("request_", request)):
                    for name, ttl in (("cached", 5.0), ("uncached", 0.0)):
                        signin.tokens.ttl_s = ttl
                        signin.tokens.clear()
                        start = time.process_time()
                        for _ in range(requests):
                            await step()
                        samples[what + name].append((time.process_time() - start) / requests * 1e6)
            assert set(statuses) == {200}, set(statuses)
        finally:
            await services.stop()
    out: dict[str, Any] = {
        "store": "postgresql" if store and store.startswith("postgres") else "sqlite",
        "requests_per_round": requests,
        "rounds": rounds,
    }
    for name, values in samples.items():
        out[name] = {"cpu_us_min": round(min(values), 2), "cpu_us_median": round(statistics.median(values), 2)}
    out["ratio_uncached_to_cached_median"] = round(out["uncached"]["cpu_us_median"] / out["cached"]["cpu_us_median"], 1)
    out["request_ratio_uncached_to_cached_median"] = round(
        out["request_uncached"]["cpu_us_median"] / out["request_cached"]["cpu_us_median"], 1
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=None)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    result = asyncio.run(run(args.store, args.requests, args.rounds))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "signin_token.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing[result["store"]] = result
    path.write_text(json.dumps(existing, indent=2) + "\n")


if __name__ == "__main__":
    main()
