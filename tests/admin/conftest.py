"""Admin API tests run the real app (SluiceASGI with the admin API mounted) over a real SQLite
store, called in-process through a tiny ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from sluice.app import Services, build_services
from sluice.auth.admin_tokens import ApiTokenAuthenticator, BootstrapAuthenticator
from sluice.auth.principal import Principal
from sluice.http.server import SluiceASGI
from sluice.settings import parse_config

BOOTSTRAP = "bootstrap-secret-for-tests-0123456789"
AUDIT_KEY = "audit-key-for-tests-0123456789abcdef"


class RoleAuthenticator:
    """Test credentials 'role:<role>[:<team>,<team>][:<user>]' become principals, so tests can
    act as any role without an identity provider."""

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        value = headers.get("authorization", "")
        if not value.startswith("Bearer role:"):
            return None
        role, _, rest = value.removeprefix("Bearer role:").partition(":")
        teams, _, user = rest.partition(":")
        return Principal(
            subject=f"test-{role}",
            roles=frozenset({role}),  # type: ignore[arg-type]
            via="oidc",
            user_id=user or None,
            email=f"{role}@example.test",
            teams=frozenset(t for t in teams.split(",") if t),
        )


def as_role(role: str, teams: str = "", user: str = "") -> str:
    return f"role:{role}:{teams}:{user}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Client:
    def __init__(self, app: SluiceASGI) -> None:
        self.app = app

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = BOOTSTRAP,
        query: dict[str, Any] | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        body = raw if raw is not None else (orjson.dumps(json) if json is not None else b"")
        sent_headers = [(b"content-type", b"application/json")]
        sent_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        if token:
            sent_headers.append((b"authorization", f"Bearer {token}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": urlencode(query or {}).encode(),
            "root_path": "",
            "headers": sent_headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent = False
        out: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await self.app(scope, receive, send)
        return Reply(out["status"], out["headers"], out["body"])

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Reply:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Reply:
        return await self.request("PUT", path, **kw)

    async def patch(self, path: str, **kw: Any) -> Reply:
        return await self.request("PATCH", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)


def admin_config(tmp_path: Path, store_url: str | None = None) -> dict[str, Any]:
    return {
        "store": {"url": store_url or f"sqlite:///{tmp_path / 'sluice.db'}"},
        "request_log": {"spill_path": str(tmp_path / "spill.jsonl")},
        "audit": {"hmac_key": AUDIT_KEY},
        "providers": {"fake": {}},
        # Budgets set through the API apply to keys that call the fake model: it needs a price.
        "pricing": {"overrides": {"echo": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 5}}},
    }


async def start(config: dict[str, Any]) -> tuple[Services, Client]:
    services = build_services(parse_config(config))
    await services.start()
    auth = [
        BootstrapAuthenticator(services.store, env={"SLUICE_ADMIN_TOKEN": BOOTSTRAP}),
        ApiTokenAuthenticator(services.store),
        RoleAuthenticator(),
    ]
    return services, Client(SluiceASGI(services, admin_authenticators=auth))


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[tuple[Services, Client]]:
    services, client = await start(admin_config(tmp_path))
    try:
        yield services, client
    finally:
        await services.stop()
