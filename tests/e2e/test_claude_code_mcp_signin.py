"""The real Claude Code reaches Sluice's /mcp with no static key: `claude mcp add --transport http`,
then `claude mcp login` discovers the authorization server (RFC 9728, RFC 8414), registers itself
(RFC 7591), and runs the authorization code with PKCE; the person signs in at the real
oidc-provider in the browser step. The CLI then lists /mcp as connected and calls a tool, recorded
against the signed-in person's key with only their access profile's tools."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from sluice.auth.directory import USER
from sluice.storage.records import AuditRecord
from tests.e2e.claude_tui import ClaudeTui
from tests.integration.mcp_support import everything, require_servers
from tests.integration.signin_stack import SigninStack, authorize_in_browser, signin_stack

CLAUDE = Path(__file__).parent / "node_modules" / ".bin" / "claude"
MODEL_KEY = "sk-sluice-e2e-mcp-signin-model-000"  # the model API's key: /mcp uses the sign-in alone
TOOL = "mcp__sluice__everything__echo"
ACCOUNTS = {"00u-mia": {"email": "mia@example.com", "name": "Mia", "groups": ["engineering"]}}
QUIET = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigninStack]:
    if not CLAUDE.exists():
        pytest.fail("Claude Code is not installed: run `make e2e-deps` (make test does it)")
    require_servers()
    profiles = [
        {
            "id": "developers",
            "groups": ["engineering"],
            "provider_configs": [{"provider": "anthropic"}],
            "mcp": {"tools": ["everything/echo"]},  # of server-everything's tools, only echo
        }
    ]
    model_key = {"id": "vk-model", "value": MODEL_KEY, "provider_configs": [{"provider": "anthropic"}]}
    tmp = tmp_path_factory.mktemp("cc-mcp-signin")
    with signin_stack(tmp, ACCOUNTS, profiles, mcp={"servers": [everything()]}, virtual_keys=[model_key]) as s:
        yield s


def cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TERM": "dumb", **QUIET}
    return subprocess.run(
        [str(CLAUDE), *args],
        env=base | env,
        cwd=home / "work",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )


def developer_machine(tmp: Path, mcp_url: str) -> Path:
    home = tmp / "home"
    (home / "work").mkdir(parents=True)
    trusted = {str(home / "work"): {"hasTrustDialogAccepted": True}}
    (home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True, "projects": trusted}))
    added = cli(home, "mcp", "add", "--transport", "http", "sluice", mcp_url)
    assert added.returncode == 0, added.stdout + added.stderr
    return home


def mcp_login(home: Path, stack: SigninStack, login: str) -> str:
    """`claude mcp login sluice --no-browser` in a terminal: it prints the authorization URL; the
    person's browser signs in and allows; the redirect lands on the CLI's own loopback listener."""
    with ClaudeTui(CLAUDE, home, QUIET, home / "work", ("mcp", "login", "sluice", "--no-browser")) as tui:
        shown = tui.expect(r"(http://127\.0\.0\.1:\d+/authorize\?\S+)", 60)
        url = shown.group(1)
        redirect_uri = dict(httpx2.URL(url).params)["redirect_uri"]
        back = authorize_in_browser(stack.base, url, login, redirect_uri)
        assert back.status_code == 303, back.text
        location = back.headers["location"]
        assert location.startswith(redirect_uri + "?code=")
        httpx2.get(location, timeout=30)  # the browser follows it to the CLI's listener
        done = tui.expect(r"Authenticated|authenticated|[Ee]rror|[Ff]ailed", 60)
        assert "rror" not in done.group(0) and "ailed" not in done.group(0), tui.screen[-2000:]
        return url


def test_claude_code_signs_in_to_mcp_and_calls_only_its_granted_tool(stack: SigninStack, tmp_path: Path) -> None:
    gw = stack.gw
    home = developer_machine(tmp_path, f"{stack.base}/mcp")
    before = cli(home, "mcp", "list")
    assert re.search(r"sluice:.*Needs authentication", before.stdout), before.stdout + before.stderr

    url = mcp_login(home, stack, "00u-mia")
    assert "code_challenge_method=S256" in url and "resource=" in url

    listed = cli(home, "mcp", "list")
    assert re.search(r"sluice:.*Connected", listed.stdout), listed.stdout + listed.stderr
    stored = mcp_credentials(home)
    assert stored["clientId"].startswith("mcp_") and stored["refreshToken"].startswith("sgr.")
    assert token_audience(stored["accessToken"]) == f"{stack.base}/mcp"  # RFC 8707: for /mcp only

    stack.upstream.upstream.reset()
    args = ["-p", f"please use a tool {TOOL}", "--model", "claude-sonnet-4-6", "--output-format", "json"]
    ran = cli(
        home,
        *args,
        "--allowedTools",
        TOOL,
        ANTHROPIC_BASE_URL=stack.base,
        ANTHROPIC_AUTH_TOKEN=MODEL_KEY,
        CLAUDE_CODE_MAX_RETRIES="0",
        ENABLE_TOOL_SEARCH="false",
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads(ran.stdout.strip().splitlines()[-1])["is_error"] is False

    posts = [r.json() for r in stack.upstream.requests if r.method == "POST" and r.path == "/v1/messages"]
    offered = {t["name"] for body in posts for t in body.get("tools", []) if t["name"].startswith("mcp__sluice__")}
    assert offered == {TOOL}  # the profile's grant, nothing else of server-everything

    [person_key] = [k for k in gw.call(gw.services.store.list_keys()) if k.user_id is not None]
    person = gw.call(gw.services.identity.directory.get(USER, person_key.user_id or ""))
    assert person is not None and person["userName"] == "mia@example.com", person
    calls = [c for c in gw.services.mcp.calls if c["kind"] == "mcp_call"]
    assert [(c["virtual_key"], c["server"], c["tool"], c["outcome"]) for c in calls] == [
        (person_key.id, "everything", "echo", "ok")
    ]
    # The audit log's record of the call names the person's key (whose user is Mia).
    assert [(r.actor, r.data["tool"]) for r in audited(stack, "mcp_call")] == [(person_key.id, "echo")]

    # The token is at its end: the client refreshes it by itself (rotating the refresh token).
    path = home / ".claude" / ".credentials.json"
    doc = json.loads(path.read_text())
    [entry] = doc["mcpOAuth"]
    doc["mcpOAuth"][entry]["expiresAt"] = int(time.time() * 1000)
    path.write_text(json.dumps(doc))
    again = cli(home, "mcp", "list")
    assert re.search(r"sluice:.*Connected", again.stdout), again.stdout + again.stderr
    renewed = mcp_credentials(home)
    assert renewed["accessToken"] != stored["accessToken"], "the client did not refresh its MCP token"
    assert renewed["refreshToken"] != stored["refreshToken"]


def mcp_credentials(home: Path) -> dict[str, Any]:
    """Where the CLI keeps its MCP OAuth tokens without a keychain: ~/.claude/.credentials.json."""
    [entry] = json.loads((home / ".claude" / ".credentials.json").read_text())["mcpOAuth"].values()
    return dict(entry)


def token_audience(token: str) -> object:
    payload = token.removeprefix("sgw.").split(".")[0]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["aud"]


def audited(stack: SigninStack, kind: str) -> list[AuditRecord]:
    async def read() -> list[AuditRecord]:
        return [r async for r in stack.gw.services.store.audit_records() if r.kind == kind]

    for _ in range(100):  # the recorder writes through its queue: wait for the record to land
        found = stack.gw.call(read())
        if found:
            return found
        time.sleep(0.1)
    return []
