"""The real Claude Code CLI signs in to Sluice from its own /login screen ("Cloud gateway"), with
the person approving in the browser at the real oidc-provider; its requests are then metered to
that person, its token refreshes, and a SCIM deactivation ends its access at the next request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.e2e.claude_tui import ENTER, UP, ClaudeTui
from tests.integration.signin_stack import HAIKU, SCIM_TOKEN, signin_stack
from tests.integration.signin_support import approve_in_browser
from tests.support import GatewayThread

CLAUDE = Path(__file__).parent / "node_modules" / ".bin" / "claude"
MANAGED_MODEL = "claude-sonnet-4-6"
ACCOUNTS = {"00u-cleo": {"email": "cleo@example.com", "name": "Cleo", "groups": ["engineering"]}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    if not CLAUDE.exists():
        pytest.fail("Claude Code is not installed: run `make e2e-deps` (make test does it)")
    profiles = [
        {
            "id": "developers",
            "groups": ["engineering"],
            "provider_configs": [{"provider": "anthropic"}],
            # The profile's policy picks the model: visible in what the client then asks for.
            "managed_settings": {"model": MANAGED_MODEL},
        }
    ]
    with signin_stack(tmp_path_factory.mktemp("cc-signin"), ACCOUNTS, profiles) as s:
        yield s.gw


def client_home(tmp: Path, gateway_url: str) -> Path:
    """A developer machine: settings that point /login at the gateway (what `sluice connect
    claude-code --signin` writes), onboarding already done."""
    home = tmp / "home"
    (home / "work").mkdir(parents=True)
    argv = [sys.executable, "-m", "sluice.cli.main", "connect", "claude-code", "--url", gateway_url, "--signin"]
    subprocess.run([*argv, "--home", str(home), "--write"], check=True, capture_output=True, timeout=60)
    trusted = {str(home / "work"): {"hasTrustDialogAccepted": True}}
    (home / ".claude.json").write_text(
        json.dumps({"hasCompletedOnboarding": True, "theme": "dark", "projects": trusted})
    )
    return home


def login(home: Path, login_name: str) -> None:
    env = {"BROWSER": "true", "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    with ClaudeTui(CLAUDE, home, env, home / "work") as tui:
        first = tui.expect(r"trust\s*this\s*folder|run\s*/login", 60)
        if "folder" in first.group(0):
            tui.send("", settle=1.0)  # the prompt takes keys only once it is drawn
            tui.send("\x1b[B")
            tui.send(ENTER)
            tui.expect(r"run\s*/login", 60)
        tui.type_line("/login")
        tui.expect(r"Enter\s*to\s*connect", 30)
        tui.send(ENTER)
        tui.expect(r"Trust\s*gateway", 30)  # first contact: the developer trusts the gateway once
        tui.send(UP)
        tui.send(ENTER)
        shown = tui.expect(r"Code:\s*([A-Z]{4}-[A-Z]{4})[\s\S]*?(https?://[^\s/]+/device)", 30)
        code, page_url = shown.group(1), shown.group(2)
        base = page_url.removesuffix("/device")
        page = approve_in_browser(base, f"{page_url}?user_code={code}", login_name)
        assert page.status_code == 200 and "signed in" in page.text.lower(), page.text
        tui.expect(r"Connected\s*to\s*Cloud\s*gateway", 60)
        tui.send(ENTER)


def ask(home: Path, prompt: str = "say hi", model: str | None = HAIKU) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    return subprocess.run(
        [str(CLAUDE), "-p", prompt, *(["--model", model] if model else [])],
        env=env,
        cwd=home / "work",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def served(gw: GatewayThread, key_id: str) -> list[dict[str, Any]]:
    return [r for r in gw.request_log() if r["virtual_key_id"] == key_id and r["status"] == 200]


def credentials(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / ".claude" / ".credentials.json").read_text())["enterpriseGateway"])


def test_claude_code_signs_in_refreshes_and_is_cut_off_by_scim(stack: GatewayThread, tmp_path: Path) -> None:
    gw = stack
    scim = httpx2.Client(base_url=f"{gw.base_url}/scim/v2", headers={"authorization": f"Bearer {SCIM_TOKEN}"})
    with scim:
        uid = scim.post("/Users", json={"userName": "cleo@example.com", "externalId": "00u-cleo"}).json()["id"]
        home = client_home(tmp_path, gw.base_url)
        login(home, "00u-cleo")
        stored = credentials(home)
        assert stored["url"] == gw.base_url and stored["jwt"].startswith("sgw.")

        answered = ask(home)
        assert answered.returncode == 0, answered.stdout + answered.stderr
        [key] = gw.call(gw.services.identity.directory.keys_of(uid))
        rows = served(gw, key.id)
        assert rows, "the request was not metered to the signed-in person's key"

        # No --model: the managed settings the gateway served for Cleo's profile choose it.
        managed = ask(home, model=None)
        assert managed.returncode == 0, managed.stdout + managed.stderr
        assert any(r["model"] == MANAGED_MODEL for r in served(gw, key.id)), "managed settings did not apply"
        rows = served(gw, key.id)

        # The token is near its end: the client refreshes it before its next request.
        path = home / ".claude" / ".credentials.json"
        doc = json.loads(path.read_text())
        doc["enterpriseGateway"]["expiresAt"] = int(time.time() * 1000)
        path.write_text(json.dumps(doc))
        again = ask(home)
        assert again.returncode == 0, again.stdout + again.stderr
        assert credentials(home)["jwt"] != stored["jwt"], "the client did not refresh its token"
        metered = len(served(gw, key.id))
        assert metered > len(rows)

        off = {"Operations": [{"op": "replace", "value": {"active": False}}]}
        assert scim.patch(f"/Users/{uid}", json=off).status_code == 200
    refused = ask(home)  # the very next request: the key is revoked with the person
    assert refused.returncode != 0
    assert len(served(gw, key.id)) == metered
