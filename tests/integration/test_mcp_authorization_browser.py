"""The MCP authorization's browser step in a real Chromium: /authorize, the real oidc-provider's
login and consent, Sluice's consent page, and the redirect to the client's own loopback listener
(which a page's CSP `form-action` would block in a real browser if it named only 'self'). Saves
docs/images/mcp-consent.png under `make screenshots`."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tests.integration.signin_stack import HAIKU, SigninStack, signin_stack
from tests.integration.test_mcp_authorization import ACCOUNTS, Client

CHROMIUM = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium")
DOCS_IMAGES = Path(__file__).parents[2] / "docs" / "images"
IMAGES = DOCS_IMAGES if os.environ.get("SLUICE_SCREENSHOTS") else Path(tempfile.mkdtemp(prefix="sluice-shots-"))
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigninStack]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium is not at {CHROMIUM}: run `make browser-deps`")
    profiles = [
        {
            "id": "developers",
            "groups": ["engineering"],
            "provider_configs": [{"provider": "anthropic", "allowed_models": [HAIKU]}],
        }
    ]
    with signin_stack(tmp_path_factory.mktemp("mcp-authz-browser"), ACCOUNTS, profiles) as s:
        yield s


class Listener:
    """The MCP client's loopback redirect listener (what Claude Code runs on localhost:<port>)."""

    def __init__(self) -> None:
        self.queries: list[dict[str, list[str]]] = []
        seen = self.queries

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/callback":  # not the browser's /favicon.ico
                    seen.append(parse_qs(urlsplit(self.path).query))
                body = b"<!doctype html><title>done</title><p>Authorization complete.</p>"
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_person_allows_claude_code_in_a_real_browser(stack: SigninStack) -> None:
    listener = Listener()
    client = Client(stack, listener.port)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            errors: list[str] = []  # CSP violations are reported as console errors
            page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(client.url())
            page.locator("input[name=login]").fill("dana")
            page.locator("input[name=password]").fill("any")
            page.locator("button[type=submit]").click()
            page.locator("button[type=submit]").click()  # the provider's consent
            page.get_by_role("link", name="Continue").click()  # first sign-in: past the key shown once
            page.get_by_role("heading", name="Allow access to MCP tools").wait_for()
            assert "dana@example.com" in page.content() and "Claude Code (sluice)" in page.content()
            IMAGES.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(IMAGES / "mcp-consent.png"), full_page=True)
            page.get_by_role("button", name="Allow").click()
            page.wait_for_url(lambda url: url.startswith(client.redirect_uri + "?"))
            assert "Authorization complete" in page.content()
            assert not errors, errors  # the redirect to the listener passed form-action
        finally:
            browser.close()
    [query] = listener.queries
    assert query["state"] == ["st-123"] and query["iss"] == [stack.base]
    assert client.exchange(query["code"][0]).status_code == 200


def test_the_device_page_works_in_a_real_browser(stack: SigninStack) -> None:
    """The /login sign-in's page in Chromium. Found here, both refused every real browser: the pages
    are sent with `Referrer-Policy: no-referrer`, so a same-origin form post carries `Origin: null`;
    and the page's CSP `form-action 'self'` blocked the post's redirect to the identity provider."""
    auth = httpx2.post(f"{stack.base}/oauth/device_authorization", data={"surface": "claude_code"}).json()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        try:
            page = browser.new_page()
            page.goto(auth["verification_uri_complete"])
            page.get_by_role("button", name="Continue").click()
            page.locator("input[name=login]").fill("dana")
            page.locator("input[name=password]").fill("any")
            page.locator("button[type=submit]").click()
            page.locator("button[type=submit]").click()  # the provider's consent
            if page.get_by_role("link", name="Continue").count():  # first sign-in: the key shown once
                page.get_by_role("link", name="Continue").click()
            page.get_by_role("heading", name="You're signed in").wait_for()
        finally:
            browser.close()
