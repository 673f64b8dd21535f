"""Real MCP servers written with the official SDK (`MCPServer`), served by uvicorn on a free
127.0.0.1 port in a thread: Streamable HTTP or the older HTTP+SSE transport. They refuse any
request without the upstream credential, so a passing test proves the gateway sent it."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Literal

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer

from tests.support import free_port_socket

UPSTREAM_TOKEN = "upstream-secret-token-0123"


def build_server(name: str) -> MCPServer:
    server = MCPServer(name)

    @server.tool()
    def add(a: int, b: int) -> str:
        """Adds two integers."""
        return f"{name}: {a} + {b} = {a + b}"

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleeps, then answers."""
        await anyio.sleep(seconds)
        return f"{name}: slept {seconds}"

    @server.resource("notes://readme", name="readme", mime_type="text/plain")
    def readme() -> str:
        return f"{name} readme"

    @server.resource("notes://secret", name="secret", mime_type="text/plain")
    def secret() -> str:
        return f"{name} secret"

    @server.prompt()
    def review(code: str) -> str:
        """Asks for a review."""
        return f"Please review: {code}"

    return server


class _RequireToken:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization") != f"Bearer {UPSTREAM_TOKEN}".encode():
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"no token"})
                return
        await self.app(scope, receive, send)


class McpServerThread:
    def __init__(self, name: str, transport: Literal["http", "sse"]) -> None:
        server = build_server(name)
        app = server.streamable_http_app() if transport == "http" else server.sse_app()
        self._sock: socket.socket = free_port_socket()
        port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}" + ("/mcp" if transport == "http" else "/sse")
        config = uvicorn.Config(_RequireToken(app), lifespan="on", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve([self._sock])), daemon=True)

    def __enter__(self) -> McpServerThread:
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return self
            threading.Event().wait(0.01)
        raise RuntimeError("MCP test server did not start")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
