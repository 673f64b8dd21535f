"""The real Claude Code, signed in to Sluice, shows the person's own budget the way it shows a
subscription's: the "You've used NN% of your usage credits" notice from the
`anthropic-ratelimit-unified-*` headers, the dollars on its /usage screen from `GET
/api/oauth/usage`, and, once the budget is spent, the gateway's message as it is (429
`billing_error`), where the 402 a virtual key gets is printed behind a generic "API Error: 402".

The client starts signed in (the credential /login stores; the sign-in itself is
test_gateway_signin_claude.py), with the person's spend this month already in the ledger."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import sluice.http.inference as inference
from sluice.core.types import WireFormat
from sluice.http.errors import error_body, error_headers
from sluice.storage.records import SpendRow
from tests.e2e.claude_tui import ClaudeTui
from tests.e2e.test_claude_code_telemetry import CLAUDE, HAIKU, signed_in_home
from tests.fakes.upstream import FakeUpstreamThread
from tests.integration.signin_tokens import SignedIn, sign_in_directly
from tests.support import GatewayThread, free_port

LIMIT_USD = 5


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    if not CLAUDE.exists():
        pytest.fail("Claude Code is not installed: run `make e2e-deps` (make test does it)")
    tmp = tmp_path_factory.mktemp("cc-usage")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    budget = {"id": "monthly", "max_limit": LIMIT_USD, "reset_duration": "1M", "calendar_aligned": True}
    with FakeUpstreamThread() as upstream:
        config: dict[str, Any] = {
            "audit": {"hmac_key": "cc-usage-audit-key-0123456789"},
            "providers": {"anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-x"}]}},
            "access_profiles": [
                {
                    "id": "developers",
                    "groups": ["engineering"],
                    "provider_configs": [{"provider": "anthropic"}],
                    "budgets": [budget],
                }
            ],
            "auth": {
                "oidc": {
                    "issuer": "https://idp.example.com",
                    "client_id": "sluice",
                    "client_secret": "client-secret-0123456789",
                    "redirect_uri": f"{base}/auth/callback",
                },
                "session": {"secret": "session-secret-0123456789", "secure_cookie": False},
                "gateway_signin": {"public_url": base},
            },
        }
        with GatewayThread(config, tmp, port=port) as gw:
            yield gw


def person(gw: GatewayThread, spent_usd: float) -> SignedIn:
    who: SignedIn = gw.call(sign_in_directly(gw.services, ["engineering"]))
    row = SpendRow(
        f"seed-{secrets.token_hex(4)}", datetime.now(UTC), who.key.id, None, None, int(spent_usd * 10**12), 1
    )
    gw.call(gw.services.store.record_spend([row]))
    return who


def ask(home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "DISABLE_AUTOUPDATER": "1",
    }
    return subprocess.run(
        [str(CLAUDE), "-p", "say hi", "--model", HAIKU],
        env=env,
        cwd=home / "work",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def answered(gw: GatewayThread, key_id: str) -> list[int]:
    return [r["status"] for r in gw.request_log() if r["virtual_key_id"] == key_id]


def test_past_75_percent_the_client_warns_and_usage_shows_the_dollars(gw: GatewayThread, tmp_path: Path) -> None:
    who = person(gw, 0.8 * LIMIT_USD)
    home = signed_in_home(tmp_path, gw, who)
    env = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    with ClaudeTui(CLAUDE, home, env, home / "work") as tui:
        tui.expect(r"Cloud\s*gateway", 60)
        tui.type_line("say hi")
        notice = tui.expect(r"used\s*80%\s*of\s*your\s*usage\s*credits\s*·\s*resets", 60)
        assert notice
        tui.type_line("/usage")
        # The dollars come from /api/oauth/usage, shown only when its reset matches the headers'.
        dollars = tui.expect(r"\$(\d+\.\d\d)\s*/\s*\$5\.00\s*spent\s*this\s*month", 30)
        assert 4.0 <= float(dollars.group(1)) < 5.0
    assert answered(gw, who.key.id) == [200]


def test_a_spent_budget_prints_the_gateways_message_as_it_is(gw: GatewayThread, tmp_path: Path) -> None:
    who = person(gw, LIMIT_USD)
    refused = ask(signed_in_home(tmp_path, gw, who))
    assert refused.returncode != 0
    out = refused.stdout.strip()
    assert re.fullmatch(
        r"Spend limit reached \(your budget .+\) · resets \w{3} \d+\. Ask your platform team .+", out
    ), out
    assert answered(gw, who.key.id) == [429]  # x-should-retry: false: not asked again


def test_the_402_a_key_gets_would_be_an_api_error(
    gw: GatewayThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shape this gateway sends keys (402 billing_error), given to a signed-in client: it
    prints it behind "API Error: 402", which is why signed-in callers get the 429."""
    wire = WireFormat.ANTHROPIC_MESSAGES

    def as_for_a_key(err: Any, request_id: str, now: Any) -> tuple[int, bytes, dict[str, str]]:
        return 402, error_body(err, wire, 402, request_id), {**error_headers(err, wire), "x-request-id": request_id}

    monkeypatch.setattr(inference, "signed_in_budget_refusal", as_for_a_key)
    who = person(gw, LIMIT_USD)
    refused = ask(signed_in_home(tmp_path, gw, who))
    assert refused.returncode != 0 and refused.stdout.startswith("API Error: 402"), refused.stdout
