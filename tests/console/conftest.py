"""Console tests run the real app (SluiceASGI, the console mounted as in production) over a real
SQLite store, through an in-process ASGI client that keeps cookies like a browser."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from sluice.app import Services
from sluice.http.server import SluiceASGI
from tests.admin.conftest import BOOTSTRAP, admin_config, as_role, start

_CSRF = re.compile(rb'name="csrf" value="([^"]+)"')


@dataclass
class Page:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def csrf(self) -> str:
        found = _CSRF.search(self.body)
        assert found, self.text[:500]
        return found.group(1).decode()


@dataclass
class Browser:
    """Cookies and forms over the ASGI app, no network."""

    app: SluiceASGI
    cookies: dict[str, str] = field(default_factory=dict)
    linger_s: float = 0.0  # how long the client stays connected after sending (a stream's first events)

    async def request(
        self, method: str, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Page:
        path, _, query = path.partition("?")
        body = urlencode(form).encode() if form is not None else b""
        sent = [(b"host", b"testserver")]
        if form is not None:
            sent.append((b"content-type", b"application/x-www-form-urlencoded"))
        if self.cookies:
            sent.append((b"cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode()))
        sent += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": sent,
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
        }
        done = False
        out: dict[str, Any] = {"body": b"", "headers": []}

        async def receive() -> dict[str, Any]:
            nonlocal done
            if done:
                await asyncio.sleep(self.linger_s)
                return {"type": "http.disconnect"}
            done = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
                out["headers"] = [(k.decode().lower(), v.decode()) for k, v in message["headers"]]
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await self.app(scope, receive, send)
        for name, value in out["headers"]:
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                if "Max-Age=0" in value:
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = val
        return Page(out["status"], out["headers"], out["body"])

    async def get(self, path: str, **kw: Any) -> Page:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, form: dict[str, str], **kw: Any) -> Page:
        return await self.request("POST", path, form, **kw)

    async def sign_in(self, token: str) -> Page:
        page = await self.get("/console/sign-in")
        return await self.post("/console/sign-in", {"csrf": page.csrf(), "token": token, "next": "/console/"})

    async def submit(self, page_path: str, action: str, fields: dict[str, str]) -> Page:
        """Loads a page, takes its CSRF token, posts a form as the page would."""
        page = await self.get(page_path)
        assert page.status == 200, (page_path, page.status, page.text[:300])
        return await self.post(action, {"csrf": page.csrf(), **fields})


def role_token(role: str, teams: str = "", user: str = "") -> str:
    return as_role(role, teams, user)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Services, SluiceASGI]]:
    config = admin_config(tmp_path)
    config.setdefault("auth", {})["guard"] = {"throttle": False}
    config["auth"]["session"] = {"secure_cookie": False, "secret": "console-test-session-secret-0123456789"}
    services, client = await start(config)
    try:
        yield services, client.app
    finally:
        await services.stop()


__all__ = ["BOOTSTRAP", "Browser", "gateway", "role_token"]
