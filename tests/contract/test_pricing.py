"""Money through a running gateway: every admitted request is priced, and reserved for what it can
really cost (issue 12, "Money: pricing"). The fake upstream stands in for the providers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import anthropic
import openai
import pytest

from sluice.pricing.table import PriceTable, pico_to_dollars
from tests.contract.conftest import log_entry
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

BUDGETED = "sk-sluice-pricing-budget-000000000"
FREE = "sk-sluice-pricing-free-00000000000"
TIGHT = "sk-sluice-pricing-tight-0000000000"
ALL = [{"provider": "anthropic"}, {"provider": "openai"}, {"provider": "gemini"}]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant"}]},
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-o"}]},
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-g"}]},
            },
            "virtual_keys": [
                {"id": "vk-budgeted", "value": BUDGETED, "provider_configs": ALL},
                {"id": "vk-free", "value": FREE, "provider_configs": ALL},
                {"id": "vk-tight", "value": TIGHT, "provider_configs": ALL},
            ],
            "budgets": [
                {"id": "b-budgeted", "virtual_key_id": "vk-budgeted", "max_limit": 1000, "reset_duration": "1d"},
                # $0.10: one Opus 5.5 answer of 1,000 tokens costs $0.02, 100 choices of it $2.
                {"id": "b-tight", "virtual_key_id": "vk-tight", "max_limit": 0.1, "reset_duration": "1d"},
            ],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("pricing")) as gw:
            yield gw, upstream


def _spend(gateway: GatewayThread, key_id: str) -> tuple[int, int, int]:
    start = datetime.now(UTC) - timedelta(days=2)
    result: tuple[int, int, int] = gateway.call(
        gateway.services.store.spend_totals("virtual_key", key_id, start, start + timedelta(days=4))
    )
    return result


@dataclass
class Reply:
    status_code: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def _post(gateway: GatewayThread, path: str, key: str, body: dict[str, Any]) -> Reply:
    headers = {"authorization": f"Bearer {key}", "x-api-key": key, "x-goog-api-key": key}
    headers.update({"anthropic-version": "2023-06-01", "content-type": "application/json"})
    request = urllib.request.Request(gateway.base_url + path, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return Reply(resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()})
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.read(), {k.lower(): v for k, v in err.headers.items()})


# --- no silent $0 ---------------------------------------------------------------------------------


def test_an_unpriced_model_is_refused_on_a_budgeted_key_before_any_upstream_call(
    setup: tuple[GatewayThread, FakeUpstreamThread],
) -> None:
    # Fails on main without the fix: the request was served and charged $0 against the budget.
    gateway, upstream = setup
    upstream.upstream.reset()
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=BUDGETED, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as exc:
        client.messages.create(model="claude-nonesuch-1", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert "claude-nonesuch-1" in exc.value.message and "pricing.overrides" in exc.value.message
    oai = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=BUDGETED, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as o_exc:
        oai.chat.completions.create(model="gpt-nonesuch", messages=[{"role": "user", "content": "x"}])
    assert o_exc.value.code == "model_not_priced"
    gem = _post(
        gateway, "/v1beta/models/gemini-nonesuch:generateContent", BUDGETED, {"contents": [{"parts": [{"text": "x"}]}]}
    )
    assert gem.status_code == 403 and gem.json()["error"]["status"] == "PERMISSION_DENIED"
    assert upstream.requests == []
    # Without a dollar budget the same model is served (and costs what nothing prices: $0).
    answer = anthropic.Anthropic(base_url=gateway.base_url, api_key=FREE, max_retries=0).messages.create(
        model="claude-nonesuch-1", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert answer.content


@pytest.mark.parametrize("policy", ["allow", {"input_cost_per_mtok": 1000, "output_cost_per_mtok": 1000}])
def test_the_unpriced_policy_can_allow_or_give_a_default_price(
    tmp_path_factory: pytest.TempPathFactory, policy: Any
) -> None:
    config = {
        "virtual_keys": [{"id": "vk-u", "value": BUDGETED, "provider_configs": [{"provider": "fake"}]}],
        "budgets": [{"id": "b-u", "virtual_key_id": "vk-u", "max_limit": 100, "reset_duration": "1d"}],
        "pricing": {"unpriced": policy},
    }
    with GatewayThread(config, tmp_path_factory.mktemp("unpriced")) as gateway:
        client = anthropic.Anthropic(base_url=gateway.base_url, api_key=BUDGETED, max_retries=0)
        raw = client.messages.with_raw_response.create(
            model="fake/echo", max_tokens=5, messages=[{"role": "user", "content": "hello"}]
        )
        row = log_entry(gateway, raw.headers["x-request-id"])
        cost, _, requests = _spend(gateway, "vk-u")
        assert requests == 1 and row["cost_pico"] == cost
        assert (cost == 0) if policy == "allow" else (cost > 0)


def test_claude_codes_default_model_is_charged(setup: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    # Fails on main without the fix: claude-opus-5-5 had no price, so every request cost $0.
    gateway, _ = setup
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=BUDGETED, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-opus-5-5", max_tokens=50, messages=[{"role": "user", "content": "say hi"}]
    )
    msg = raw.parse()
    row = log_entry(gateway, raw.headers["x-request-id"])
    expected = PriceTable.bundled().cost_pico("claude-opus-5-5", _usage(msg.usage))
    assert row["cost_pico"] == expected > 0


def _usage(u: Any) -> Any:
    from sluice.core.types import Usage

    return Usage(u.input_tokens, u.output_tokens, u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0)


def test_the_model_the_provider_served_is_priced(setup: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    # Fails on main without the fix: the requested (cheap) model's price was charged.
    gateway, upstream = setup
    upstream.upstream.reset()
    answer = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-1-20250805",  # the provider says a dearer model answered
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1_000_000, "output_tokens": 0},
    }
    upstream.upstream.fail_next(200, answer)
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=BUDGETED, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    row = log_entry(gateway, raw.headers["x-request-id"])
    assert pico_to_dollars(row["cost_pico"]) == 15  # Opus 4.1's $15 per million input tokens, not Haiku's $1
    assert row["attempts"][-1]["served_model"] == "claude-opus-4-1-20250805"


def test_server_tools_and_one_hour_cache_writes_are_settled(setup: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    # Fails on main without the fix: searches were free and 1-hour writes paid the 5-minute rate.
    gateway, upstream = setup
    upstream.upstream.reset()
    usage = {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 1_000_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1_000_000},
        "server_tool_use": {"web_search_requests": 7},
    }
    answer = {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-5-5",
        "content": [{"type": "text", "text": "found it"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }
    upstream.upstream.fail_next(200, answer)
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=BUDGETED, max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="claude-opus-5-5",
        max_tokens=5,
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 7}],
        messages=[{"role": "user", "content": "search"}],
    )
    row = log_entry(gateway, raw.headers["x-request-id"])
    # $8 per million 1-hour cache-write tokens, plus 7 searches at $10 per 1,000.
    assert pico_to_dollars(row["cost_pico"]) == Decimal(8) + Decimal("0.07")


def test_an_answer_without_usage_is_charged_its_reservation(setup: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    # Fails on main without the fix: an answer with no usage object was settled at $0.
    gateway, upstream = setup
    upstream.upstream.reset()
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-5",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    }
    upstream.upstream.fail_next(200, answer)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=BUDGETED, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-5", max_completion_tokens=1000, messages=[{"role": "user", "content": "x"}]
    )
    row = log_entry(gateway, raw.headers["x-request-id"])
    # At least the 1,000 reserved output tokens at $10 per million.
    assert row["cost_pico"] >= 1000 * 10 * 10**6


def test_background_responses_are_refused_on_a_budgeted_key(setup: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    # Fails on main without the fix: the queued answer carried no usage and was settled at $0.
    gateway, upstream = setup
    upstream.upstream.reset()
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=BUDGETED, max_retries=0)
    with pytest.raises(openai.BadRequestError) as exc:
        client.responses.create(model="gpt-5", input="a long job", background=True)
    assert "background" in exc.value.message
    assert upstream.requests == []


# --- the reservation covers the real worst case ----------------------------------------------------


def test_many_choices_are_reserved_for(setup: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    # Fails on main without the fix: n was ignored, so 100 answers were reserved as one.
    gateway, upstream = setup
    upstream.upstream.reset()
    oai = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=TIGHT, max_retries=0)
    with pytest.raises(openai.APIStatusError) as exc:
        oai.chat.completions.create(
            model="gpt-5", n=100, max_completion_tokens=1000, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 402 and exc.value.code == "budget_exceeded"
    gem = _post(
        gateway,
        "/v1beta/models/gemini-2.5-pro:generateContent",
        TIGHT,
        {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 8, "maxOutputTokens": 2000}},
    )
    assert gem.status_code == 402  # 8 x 2,000 tokens x $10 per million > $0.10
    assert upstream.requests == []


@pytest.mark.parametrize(
    "spelling",
    [
        {"max_completion_tokens": 1_000_000},
        {"max_tokens": 1, "max_completion_tokens": 1_000_000},  # the provider honours the larger one
        {"reasoning_effort": "high", "max_completion_tokens": 1_000_000},
    ],
)
def test_every_spelling_of_the_output_limit_is_reserved(
    setup: tuple[GatewayThread, FakeUpstreamThread], spelling: dict[str, Any]
) -> None:
    gateway, upstream = setup
    upstream.upstream.reset()
    body = {"model": "gpt-5", "messages": [{"role": "user", "content": "x"}], **spelling}
    resp = _post(gateway, "/v1/chat/completions", TIGHT, body)
    assert resp.status_code == 402 and resp.json()["error"]["code"] == "budget_exceeded"
    assert upstream.requests == []


def test_a_thinking_budget_beyond_max_tokens_is_reserved(setup: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    gateway, upstream = setup
    upstream.upstream.reset()
    body = {
        "model": "claude-opus-5-5",
        "max_tokens": 10,
        "thinking": {"type": "enabled", "budget_tokens": 1_000_000},  # interleaved thinking may exceed max_tokens
        "messages": [{"role": "user", "content": "x"}],
    }
    resp = _post(gateway, "/v1/messages", TIGHT, body)
    assert resp.status_code == 402 and resp.json()["error"]["type"] == "billing_error"
    assert upstream.requests == []


@pytest.mark.parametrize("limit", ["100", -1, 0, True, 1.5, 10**9, None])
def test_a_bad_output_limit_is_a_400_in_each_surfaces_format(
    setup: tuple[GatewayThread, FakeUpstreamThread], limit: Any
) -> None:
    # Fails on main without the fix: a string, negative, boolean or absurd limit was read as
    # "no limit" and the default was reserved; 10**9 tokens passed through as a real reservation.
    gateway, upstream = setup
    upstream.upstream.reset()
    if limit is None:  # an absurd n
        body: dict[str, Any] = {"model": "gpt-5", "n": 10**6, "messages": [{"role": "user", "content": "x"}]}
        resp = _post(gateway, "/v1/chat/completions", BUDGETED, body)
        assert resp.status_code == 400 and "'n'" in resp.json()["error"]["message"]
        return
    chat = _post(
        gateway,
        "/v1/chat/completions",
        BUDGETED,
        {"model": "gpt-5", "max_completion_tokens": limit, "messages": [{"role": "user", "content": "x"}]},
    )
    assert chat.status_code == 400 and "max_completion_tokens" in chat.json()["error"]["message"]
    messages = _post(
        gateway,
        "/v1/messages",
        BUDGETED,
        {"model": "claude-opus-5-5", "max_tokens": limit, "messages": [{"role": "user", "content": "x"}]},
    )
    assert messages.status_code == 400 and messages.json()["error"]["type"] == "invalid_request_error"
    gem = _post(
        gateway,
        "/v1beta/models/gemini-2.5-pro:generateContent",
        BUDGETED,
        {"contents": [{"parts": [{"text": "x"}]}], "generation_config": {"max_output_tokens": limit}},
    )
    assert gem.status_code == 400 and gem.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert upstream.requests == []


def test_the_priority_tier_is_reserved_at_its_rate(setup: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    # Fails on main without the fix: the standard rate was reserved whatever tier was asked for.
    gateway, upstream = setup
    upstream.upstream.reset()
    # 6,000 output tokens of gpt-6.1-sol: $0.06 at the standard $10/M, $0.12 at priority's $20/M;
    # the tight budget holds $0.10.
    body = {"model": "gpt-6.1-sol", "max_completion_tokens": 6_000, "messages": [{"role": "user", "content": "x"}]}
    refused = _post(gateway, "/v1/chat/completions", TIGHT, {**body, "service_tier": "priority"})
    assert refused.status_code == 402 and upstream.requests == []
    assert _post(gateway, "/v1/chat/completions", TIGHT, body).status_code == 200


def test_the_tier_asked_for_is_billed_when_the_answer_does_not_say(
    setup: tuple[GatewayThread, FakeUpstreamThread],
) -> None:
    # Fails on main without the fix: a fast-mode request was billed at the standard rate.
    gateway, upstream = setup
    upstream.upstream.reset()
    answer = {
        "id": "msg_3",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-5-5",
        "content": [{"type": "text", "text": "quick"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1_000_000, "output_tokens": 0},
    }
    upstream.upstream.fail_next(200, answer)
    body = {
        "model": "claude-opus-5-5",
        "max_tokens": 5,
        "speed": "fast",
        "messages": [{"role": "user", "content": "x"}],
    }
    resp = _post(gateway, "/v1/messages", BUDGETED, body)
    assert resp.status_code == 200
    row = log_entry(gateway, resp.headers["x-request-id"])
    assert pico_to_dollars(row["cost_pico"]) == 8  # fast mode: $8 per million, not $4
