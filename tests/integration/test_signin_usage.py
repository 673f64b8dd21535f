"""A signed-in person's standing against their own budget, as Claude Code reads it
(tests/fixtures/claude_gateway/reference_protocol.md, "Usage-limit headers"): the
`anthropic-ratelimit-unified-*` headers on answers, `GET /api/oauth/usage` in cents, and the 429
`billing_error` once the budget is spent. Through the real HTTP gateway, with the person's spend
already in the ledger (the counters read it when their window is first used)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from sluice.storage.records import SpendRow
from tests.fakes.upstream import FakeUpstreamThread
from tests.integration.signin_tokens import SignedIn, sign_in_directly
from tests.support import GatewayThread, free_port

HAIKU = "claude-haiku-4-5-20251001"
LIMIT_USD = 5  # per person per calendar month
PREFIX = "anthropic-ratelimit-unified-"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    tmp = tmp_path_factory.mktemp("signin-usage")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with FakeUpstreamThread() as upstream:
        config: dict[str, Any] = {
            "audit": {"hmac_key": "usage-audit-key-0123456789"},
            "providers": {"anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-x"}]}},
            "access_profiles": [
                {
                    "id": "capped",
                    "groups": ["engineering"],
                    "provider_configs": [{"provider": "anthropic"}],
                    "budgets": [
                        {"id": "monthly", "max_limit": LIMIT_USD, "reset_duration": "1M", "calendar_aligned": True}
                    ],
                },
                {"id": "open", "groups": ["research"], "provider_configs": [{"provider": "anthropic"}]},
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


def person(gw: GatewayThread, groups: list[str], spent_usd: float) -> SignedIn:
    who: SignedIn = gw.call(sign_in_directly(gw.services, groups))
    if spent_usd:
        row = SpendRow(
            f"seed-{secrets.token_hex(4)}", datetime.now(UTC), who.key.id, None, None, int(spent_usd * 10**12), 1000
        )
        gw.call(gw.services.store.record_spend([row]))
    return who


def ask(gw: GatewayThread, token: str) -> httpx2.Response:
    body = {"model": HAIKU, "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    return httpx2.post(f"{gw.base_url}/v1/messages", json=body, headers=headers, timeout=30)


def usage(gw: GatewayThread, token: str) -> httpx2.Response:
    return httpx2.get(f"{gw.base_url}/api/oauth/usage", headers={"authorization": f"Bearer {token}"})


def month_end() -> datetime:
    now = datetime.now(UTC)
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


def test_past_75_percent_the_answer_warns_and_usage_says_the_same_cap(gw: GatewayThread) -> None:
    who = person(gw, ["engineering"], 0.8 * LIMIT_USD)
    answer = ask(gw, who.access_token)
    assert answer.status_code == 200, answer.text
    h = answer.headers
    reset = str(int(month_end().timestamp()))
    assert h[PREFIX + "status"] == h[PREFIX + "overage-status"] == "allowed_warning"
    assert h[PREFIX + "representative-claim"] == "overage"
    assert h[PREFIX + "overage-utilization"] == "0.80"
    assert h[PREFIX + "overage-surpassed-threshold"] == "0.75"
    assert h[PREFIX + "reset"] == h[PREFIX + "overage-reset"] == reset
    assert not [n for n in h if n.startswith("anthropic-ratelimit-") and not n.startswith(PREFIX)]

    doc = usage(gw, who.access_token)
    assert doc.status_code == 200 and doc.headers["cache-control"] == "no-store"
    extra, [row] = doc.json()["extra_usage"], doc.json()["limits"]
    assert extra["monthly_limit"] == LIMIT_USD * 100 and extra["currency"] == "USD"
    assert 400 <= extra["used_credits"] < 410 and extra["utilization"] == 80  # cents: the seed and the answer
    assert row["group"] == "monthly" and row["is_active"] is True and row["percent"] == 80
    # The client pairs the dollars with the percent only when both name the same instant.
    assert datetime.fromisoformat(row["resets_at"].replace("Z", "+00:00")).timestamp() == int(reset)


def test_below_75_percent_no_threshold_and_no_warning(gw: GatewayThread) -> None:
    who = person(gw, ["engineering"], 0.1 * LIMIT_USD)
    h = ask(gw, who.access_token).headers
    assert h[PREFIX + "status"] == "allowed" and h[PREFIX + "overage-utilization"] == "0.10"
    assert PREFIX + "overage-surpassed-threshold" not in h


def test_a_person_with_no_cap_gets_no_headers_and_their_spend_in_cents(gw: GatewayThread) -> None:
    who = person(gw, ["research"], 1.25)
    answer = ask(gw, who.access_token)
    assert answer.status_code == 200 and not [n for n in answer.headers if n.startswith(PREFIX)]
    doc = usage(gw, who.access_token).json()
    assert doc["limits"] == []
    extra = doc["extra_usage"]
    assert extra["monthly_limit"] is None and extra["utilization"] is None
    assert extra["used_credits"] >= 125 and extra["daily"]["used_credits"] >= 125 and extra["weekly"]["limit"] is None


def test_a_spent_budget_is_the_429_billing_error_the_client_prints(gw: GatewayThread) -> None:
    who = person(gw, ["engineering"], LIMIT_USD)
    refused = ask(gw, who.access_token)
    assert refused.status_code == 429
    body = refused.json()
    assert body["type"] == "error" and body["error"]["type"] == "billing_error"
    assert "Spend limit reached" in body["error"]["message"] and "resets" in body["error"]["message"]
    h = refused.headers
    assert h["x-should-retry"] == "false" and int(h["retry-after"]) >= 1
    assert h[PREFIX + "status"] == "rejected" and h[PREFIX + "overage-period"] == "monthly"
    assert h[PREFIX + "overage-reset"] == str(int(month_end().timestamp()))
    assert h[PREFIX + "overage-utilization"] == "1" and h[PREFIX + "overage-surpassed-threshold"] == "1"
    # Off the 429, or the client writes its own line and drops ours.
    assert PREFIX + "representative-claim" not in h and PREFIX + "overage-status" not in h


def test_usage_needs_a_sign_in_token(gw: GatewayThread) -> None:
    refused = httpx2.get(f"{gw.base_url}/api/oauth/usage", headers={"authorization": "Bearer sgw.forged.x"})
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    assert httpx2.get(f"{gw.base_url}/api/oauth/usage").status_code == 401
