"""One gateway (in-process, as tests/contract does) in front of one fake upstream that speaks every
provider's API and records each request's raw path and each answer's status, plus a real MCP
server (the official SDK's) behind the gateway's /mcp endpoint, for the hostile-input suite."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.client import HTTPResponse
from typing import Any

import orjson
import pytest
import uvicorn

from tests.contract.cloud_setup import AWS
from tests.fakes.cloud import CloudFakeThread, CloudSettings, make_service_account
from tests.fakes.mcp_servers import UPSTREAM_TOKEN, build_server
from tests.support import GatewayThread, free_port_socket

BUDGETED = "sk-sluice-hostile-budget-0000000"  # direct providers, explicit allowlists, a dollar budget
CLOUD = "sk-sluice-hostile-cloud-00000000"  # Bedrock and Vertex, explicit allowlists, a dollar budget
WILD = "sk-sluice-hostile-wild-000000000"  # wildcard grants on the URL-model providers, no budget
MCP_KEY = "sk-sluice-hostile-mcp-0000000000"
BUDGETED_KEYS = {BUDGETED, CLOUD}
PRICED = ["claude-haiku-4-5", "claude-haiku-4-5-20251001", "gpt-4o-mini", "text-embedding-3-small", "gemini-2.5-flash"]
HAIKU_ON_BEDROCK = "us.anthropic.claude-haiku-4-5-20251001-v1:0"

# Every upstream path the config below can make the gateway call: the providers' documented
# routes, with the model as one escaped path segment (never '.', '..', a '/' or a query).
_SEGMENT = r"(?!\.{1,2}[:/])(?:[A-Za-z0-9._~@-]|%[0-9A-F]{2})+"
ALLOWED_PATHS = re.compile(
    r"^(?:/v1/messages(?:/count_tokens)?|/v1/chat/completions|/v1/embeddings|/v1/responses(?:/input_tokens)?"
    rf"|/v1beta/models/{_SEGMENT}:(?:generateContent|streamGenerateContent|countTokens)"
    rf"|/model/{_SEGMENT}/(?:invoke|invoke-with-response-stream|converse|converse-stream)"
    r"|/v1/projects/sluice-test/locations/us-east5/publishers/(?:anthropic|google)/models/"
    rf"{_SEGMENT}:(?:rawPredict|streamRawPredict|generateContent|streamGenerateContent|countTokens))$"
)
ALLOWED_QUERIES = {"", "alt=sse", "beta=true"}


def hostile_config(base: str, service_account: dict[str, str], mcp_url: str) -> dict[str, Any]:
    price = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 5}
    return {
        "providers": {
            "anthropic": {"base_url": base, "keys": [{"name": "anthropic-main", "value": "sk-ant-hostile-upstream"}]},
            "openai": {"base_url": base + "/v1", "keys": [{"name": "openai-main", "value": "sk-openai-hostile"}]},
            "gemini": {"base_url": base, "keys": [{"name": "gemini-main", "value": "AIza-hostile-upstream"}]},
            "bedrock": {
                "base_url": base,
                "region": AWS.region,
                "access_key_id": AWS.access_key_id,
                "secret_access_key": AWS.secret_access_key,
                "session_token": AWS.session_token,
                "models": {"claude-haiku-4-5": HAIKU_ON_BEDROCK, "claude-haiku-4-5-20251001": HAIKU_ON_BEDROCK},
            },
            "vertex": {
                "base_url": base,
                "region": "us-east5",
                "credentials": orjson.dumps(service_account).decode(),
                "models": {"claude-haiku-4-5": "claude-haiku-4-5@20251001"},
            },
        },
        # Explicit prices, so "a 200 on a budgeted key has a ledger row of cost > 0" means something
        # whatever the bundled table holds.
        "pricing": {name: price for name in PRICED},
        "virtual_keys": [
            {
                "id": "vk-budgeted",
                "value": BUDGETED,
                "provider_configs": [
                    {"provider": "anthropic", "allowed_models": ["claude-haiku-4-5", "claude-haiku-4-5-20251001"]},
                    {"provider": "openai", "allowed_models": ["gpt-4o-mini", "text-embedding-3-small"]},
                    {"provider": "gemini", "allowed_models": ["gemini-2.5-flash"]},
                ],
            },
            {
                "id": "vk-cloud",
                "value": CLOUD,
                "provider_configs": [
                    {"provider": "bedrock", "allowed_models": ["claude-haiku-4-5", "claude-haiku-4-5-20251001"]},
                    {"provider": "vertex", "allowed_models": ["claude-haiku-4-5-20251001", "gemini-2.5-flash"]},
                ],
            },
            {
                "id": "vk-wild",
                "value": WILD,
                "provider_configs": [{"provider": "gemini"}, {"provider": "bedrock"}, {"provider": "vertex"}],
            },
            {
                "id": "vk-mcp",
                "value": MCP_KEY,
                "mcp": {"tools": ["remote/add"], "resources": ["remote/notes://readme"]},
            },
        ],
        "budgets": [
            {"id": "b-budgeted", "virtual_key_id": "vk-budgeted", "max_limit": 1000, "reset_duration": "1d"},
            {"id": "b-cloud", "virtual_key_id": "vk-cloud", "max_limit": 1000, "reset_duration": "1d"},
        ],
        "mcp": {"servers": [{"name": "remote", "transport": "http", "url": mcp_url, "headers": _mcp_auth()}]},
        "routing": {"retries": {"attempts": 1}},
    }


def _mcp_auth() -> dict[str, str]:
    os.environ["SLUICE_HOSTILE_MCP_AUTH"] = f"Bearer {UPSTREAM_TOKEN}"
    return {"Authorization": "env.SLUICE_HOSTILE_MCP_AUTH"}


class CountingMcpServer:
    """The SDK-written MCP server of tests/fakes/mcp_servers.py, counting the JSON-RPC methods
    it receives, so a test can tell whether a refused call reached it."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (method, params) of every request
        self._app = build_server("remote").streamable_http_app()
        self._sock = free_port_socket()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/mcp"
        config = uvicorn.Config(self._asgi, lifespan="on", log_level="warning", access_log=False, interface="asgi3")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve([self._sock])), daemon=True)

    async def _asgi(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self._app(scope, receive, send)
        if dict(scope["headers"]).get(b"authorization") != f"Bearer {UPSTREAM_TOKEN}".encode():
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"no token"})
            return None
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            doc = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            doc = None
        for item in doc if isinstance(doc, list) else [doc]:
            if isinstance(item, dict) and isinstance(item.get("method"), str):
                self.methods.append(item["method"])
                params = item.get("params")
                self.calls.append((item["method"], params if isinstance(params, dict) else {}))
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self._app(scope, replay, send)

    def __enter__(self) -> CountingMcpServer:
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("MCP test server did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class Stack:
    gateway: GatewayThread
    fake: CloudFakeThread
    mcp: CountingMcpServer
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    def send(self, method: str, target: bytes, headers: dict[str, str], body: bytes) -> Answer:
        """Sends exactly these bytes (request-target, headers, body) and reads the whole answer."""
        lines = [method.encode() + b" " + target + b" HTTP/1.1", f"host: 127.0.0.1:{self.gateway.port}".encode()]
        lines += [f"{k}: {v}".encode() for k, v in headers.items()]
        lines += [f"content-length: {len(body)}".encode(), b"connection: close", b"", b""]
        with socket.create_connection(("127.0.0.1", self.gateway.port), timeout=30) as sock:
            sock.sendall(b"\r\n".join(lines) + body)
            resp = HTTPResponse(sock)
            resp.begin()
            data = resp.read()
            return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    def logged(self, request_id: str) -> dict[str, Any] | None:
        """The request-log row of `request_id` (waiting briefly: it is handed over after the answer)."""
        deadline = time.monotonic() + 2

        async def fetch() -> list[dict[str, Any]]:
            await self.gateway.services.recorder.flush()
            return await self.gateway.services.store.recent_requests(50)

        while time.monotonic() < deadline:
            for row in self.gateway.call(fetch()):
                if row["request_id"] == request_id:
                    return dict(row)
            time.sleep(0.01)
        return None

    def ledger_cost(self, request_id: str) -> int | None:
        rows = self.gateway.call(self.gateway.services.store.spend_since(self.started))
        costs = [r.cost_pico for r in rows if r.request_id == request_id]
        return sum(costs) if costs else None


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    account = make_service_account("sluice-test")
    with CloudFakeThread(CloudSettings(aws=AWS, vertex=account)) as fake, CountingMcpServer() as mcp:
        config = hostile_config(fake.base_url, account.info, mcp.url)
        with GatewayThread(config, tmp_path_factory.mktemp("hostile")) as gateway:
            yield Stack(gateway, fake, mcp)
