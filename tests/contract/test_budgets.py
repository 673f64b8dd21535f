"""Budgets and rate limits through a running gateway, with real concurrency."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import anthropic
import openai
import pytest

from tests.contract.conftest import log_entry
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-budget-test-0000000000"
TEAM_KEY = "sk-sluice-budget-team-0000000000"
LIMIT_USD = 0.01


@pytest.fixture(scope="module")
def budget_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant"}]},
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-o"}]},
            },
            "teams": [{"id": "team-tiny"}],
            "virtual_keys": [
                {
                    "id": "vk-budget",
                    "value": KEY,
                    "provider_configs": [{"provider": "anthropic"}, {"provider": "openai"}],
                },
                {
                    "id": "vk-team-member",
                    "value": TEAM_KEY,
                    "team_id": "team-tiny",
                    "provider_configs": [{"provider": "anthropic"}],
                },
            ],
            "budgets": [
                {
                    "id": "budget-vk",
                    "virtual_key_id": "vk-budget",
                    "max_limit": LIMIT_USD,
                    "reset_duration": "1d",
                    "calendar_aligned": True,
                },
                {"id": "budget-team", "team_id": "team-tiny", "max_limit": 0.000001, "reset_duration": "1M"},
            ],
            "rate_limits": [{"id": "rl-team", "team_id": "team-tiny", "max_concurrent_requests": 50}],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("budgets")) as gw:
            yield gw, upstream


async def _stream(session: aiohttp.ClientSession, base_url: str, i: int) -> tuple[int, bytes]:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": f"request number {i}"}],
    }
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    async with session.post(base_url + "/v1/messages", json=body, headers=headers) as resp:
        return resp.status, await resp.read()


def test_200_concurrent_streams_never_pass_the_budget(
    budget_gateway: tuple[GatewayThread, FakeUpstreamThread],
) -> None:
    gateway, _ = budget_gateway

    async def main() -> list[tuple[int, bytes]]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            return list(await asyncio.gather(*(_stream(session, gateway.base_url, i) for i in range(200))))

    results = asyncio.run(main())
    ok = [body for status, body in results if status == 200]
    refused = [body for status, body in results if status == 402]
    # Held back by others' reservations for longer than busy_wait_s (a loaded machine): told to retry.
    busy = [body for status, body in results if status == 429 and b"is not spent but busy" in body]
    assert len(ok) + len(refused) + len(busy) == 200 and ok and refused
    assert all(b"event: message_stop" in body for body in ok)
    assert b'"type":"billing_error"' in refused[0] and b"Budget 'budget-vk'" in refused[0]
    now = datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    cost, _, requests = gateway.call(
        gateway.services.store.spend_totals("virtual_key", "vk-budget", start, start + timedelta(days=1))
    )
    assert requests == len(ok)  # every delivered stream is settled, once
    # The documented bound: reservations cover the worst case, so spend never passes the limit.
    assert cost <= LIMIT_USD * 10**12
    assert cost > 0


def test_exhausted_budget_is_402_with_budget_headers_and_no_upstream_call(
    budget_gateway: tuple[GatewayThread, FakeUpstreamThread],
) -> None:
    gateway, upstream = budget_gateway
    upstream.upstream.reset()
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=TEAM_KEY, max_retries=3)
    with pytest.raises(anthropic.APIStatusError) as exc:
        client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert exc.value.status_code == 402
    assert "Budget 'budget-team' (team team-tiny) is exhausted" in exc.value.message
    assert "resets at" in exc.value.message
    assert exc.value.response.headers["x-should-retry"] == "false"
    assert upstream.requests == []  # refused before any provider call
    tries = [r for r in gateway.request_log() if r["virtual_key_id"] == "vk-team-member"]
    assert len(tries) == 1  # and the SDK, allowed 3 retries, did not retry


def test_openai_surface_budget_error_and_remaining_headers(
    budget_gateway: tuple[GatewayThread, FakeUpstreamThread],
) -> None:
    gateway, _ = budget_gateway
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=KEY, max_retries=0)
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    except openai.APIStatusError as err:  # the budget may already be spent by the concurrency test
        assert err.status_code == 402 and err.code == "budget_exceeded"
        return
    assert raw.headers["x-sluice-budget-id"] == "budget-vk"
    assert float(raw.headers["x-sluice-budget-remaining-usd"]) <= LIMIT_USD
    assert raw.headers["x-sluice-budget-reset"].endswith("T00:00:00Z")


def test_stream_outgrowing_the_budget_is_cut_with_an_in_stream_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    # The request names no max_tokens: 100 output tokens are reserved, and the budget cannot
    # cover another block, so the 10,000-character answer is stopped and what went out is billed.
    limit_usd = 0.02
    config = {
        "virtual_keys": [{"id": "vk-long", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
        "pricing": {"long": {"input_cost_per_mtok": 10, "output_cost_per_mtok": 100}},
        "budgets": [
            {
                "id": "budget-long",
                "virtual_key_id": "vk-long",
                "max_limit": limit_usd,
                "reset_duration": "1d",
                "calendar_aligned": True,
            }
        ],
        "governance": {"default_max_tokens": 100},
    }
    with GatewayThread(config, tmp_path_factory.mktemp("cut")) as gateway:
        client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=KEY, max_retries=0)
        text = ""
        raw = client.chat.completions.with_raw_response.create(
            model="fake/long", stream=True, messages=[{"role": "user", "content": "write a lot"}]
        )
        with pytest.raises(openai.APIError) as exc:
            for chunk in raw.parse():
                text += chunk.choices[0].delta.content or "" if chunk.choices else ""
        assert "Budget 'budget-long'" in str(exc.value)
        assert 0 < len(text) < 10_000  # part of the answer went out, not all of it
        # The server settles and logs once it has closed the stream.
        row = log_entry(gateway, raw.headers["x-request-id"])
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        cost, tokens, requests = gateway.call(
            gateway.services.store.spend_totals("virtual_key", "vk-long", start, start + timedelta(days=1))
        )
        assert requests == 1
        assert tokens >= len(text) // 3  # what was delivered is billed (estimated generously)
        assert 0 < cost <= limit_usd * 10**12  # and the budget was not passed
        assert row["error_kind"] == "POLICY_BUDGET_EXCEEDED" and row["cost_pico"] == cost


def test_rate_limited_requests_get_429_with_each_surfaces_headers(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = {
        "virtual_keys": [{"id": "vk-rl", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
        "rate_limits": [
            {"id": "rl", "virtual_key_id": "vk-rl", "request_max_limit": 2, "request_reset_duration": "1h"}
        ],
    }
    with GatewayThread(config, tmp_path_factory.mktemp("rl")) as gateway:
        oai = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=KEY, max_retries=0)
        first = oai.chat.completions.with_raw_response.create(
            model="fake/echo", messages=[{"role": "user", "content": "1"}]
        )
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        oai.chat.completions.create(model="fake/echo", messages=[{"role": "user", "content": "2"}])
        with pytest.raises(openai.RateLimitError) as o_err:
            oai.chat.completions.create(model="fake/echo", messages=[{"role": "user", "content": "3"}])
        headers = o_err.value.response.headers
        assert o_err.value.code == "rate_limit_exceeded" and "2 requests per 1h" in o_err.value.message
        assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-remaining-requests"] == "0"
        assert 0 < int(headers["retry-after"]) <= 3600 and headers["x-ratelimit-reset-requests"].endswith("s")
        ant = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
        with pytest.raises(anthropic.RateLimitError) as a_err:
            ant.messages.create(model="fake/echo", max_tokens=5, messages=[{"role": "user", "content": "4"}])
        a_headers = a_err.value.response.headers
        assert a_headers["anthropic-ratelimit-requests-limit"] == "2"
        assert a_headers["anthropic-ratelimit-requests-reset"].endswith("Z")
        assert a_err.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


@pytest.mark.parametrize("fail_open", [False, True])
def test_unreachable_redis_fails_closed_unless_every_limit_says_fail_open(
    tmp_path_factory: pytest.TempPathFactory, fail_open: bool
) -> None:
    config = {
        "governance": {"backend": "redis", "redis_url": "redis://127.0.0.1:1/0"},  # nothing listens there
        "virtual_keys": [{"id": "vk-r", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
        "pricing": {"echo": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 1}},
        "budgets": [
            {"id": "b-r", "virtual_key_id": "vk-r", "max_limit": 10, "reset_duration": "1d", "fail_open": fail_open}
        ],
    }
    with GatewayThread(config, tmp_path_factory.mktemp("redis-down")) as gateway:
        client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
        if fail_open:
            msg = client.messages.create(model="fake/echo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
            assert msg.content
            return
        with pytest.raises(anthropic.APIStatusError) as exc:
            client.messages.create(model="fake/echo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert exc.value.status_code == 503
        assert "cannot be checked" in exc.value.message


# -- no false 402: 200 streams of a coding agent on a small budget --------------------------------

AGENT_LIMIT_USD = 4
AGENT_BUDGET = {
    "virtual_keys": [{"id": "vk-agent", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
    "pricing": {"echo": {"input_cost_per_mtok": 1000, "output_cost_per_mtok": 1000}},
    "budgets": [
        {
            "id": "budget-agent",
            "virtual_key_id": "vk-agent",
            "max_limit": AGENT_LIMIT_USD,
            "reset_duration": "1d",
            "calendar_aligned": True,
        }
    ],
    # Streams reserve one block of 50 output tokens up front, not the 32,000 they ask for.
    "governance": {"default_max_tokens": 50},
}


async def agent_stream(session: aiohttp.ClientSession, base_url: str, i: int) -> tuple[int, bytes, int]:
    """One agent request the way the official SDKs send it: a 429 is retried after its
    Retry-After; a 402 is final. Returns (final status, body, 429s seen)."""
    body = {
        "model": "fake/echo",
        "max_tokens": 32_000,  # what Claude Code sends
        "stream": True,
        "messages": [{"role": "user", "content": f"agent request number {i}"}],
    }
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    busy = 0
    while True:
        async with session.post(base_url + "/v1/messages", json=body, headers=headers) as resp:
            data = await resp.read()
            if resp.status != 429 or busy >= 20:
                return resp.status, data, busy
            assert b"is not spent but busy" in data and resp.headers["x-should-retry"] != "false"
            busy += 1
            await asyncio.sleep(float(resp.headers["retry-after"]))


def check_no_false_402(results: list[tuple[int, bytes, int]], spent_pico: int, rows: int, limit_usd: float) -> None:
    """The target of issue 12: at least 95% of the budget is used, never more than all of it (the
    documented bound is zero here: no stream outgrows its block), and every 402 came when settled
    spend alone left too little for one more request."""
    ok = [body for status, body, _ in results if status == 200]
    refused = [body.decode() for status, body, _ in results if status == 402]
    assert len(ok) + len(refused) == len(results), sorted({status for status, _, _ in results})
    assert all(b"event: message_stop" in body for body in ok)
    assert rows == len(ok)  # every delivered stream is settled, once
    assert spent_pico <= limit_usd * 10**12
    assert spent_pico >= 0.95 * limit_usd * 10**12, spent_pico / 10**12
    assert refused, "200 requests cost more than the budget: the last ones are refused"
    for message in refused:
        spent = float(re.search(r"spent \$([0-9]+\.[0-9]+)", message).group(1))  # type: ignore[union-attr]
        need = float(re.search(r"may cost up to \$([0-9]+\.[0-9]+)", message).group(1))  # type: ignore[union-attr]
        assert spent + need > limit_usd - 0.0001, message  # settled spend alone left too little
    print(
        f"{len(ok)} delivered, {len(refused)} refused with 402, {sum(b for _, _, b in results)} busy 429s retried, "
        f"{spent_pico / limit_usd / 10**10:.1f}% of the budget used"
    )


def test_200_agent_streams_use_the_budget_and_get_402_only_when_it_is_spent(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # Fails on main: each stream reserved all 32,000 output tokens ($32 > the $4 budget), so every
    # request got a 402 with the whole budget left.
    with GatewayThread(AGENT_BUDGET, tmp_path_factory.mktemp("agents")) as gateway:

        async def main() -> list[tuple[int, bytes, int]]:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
                return list(await asyncio.gather(*(agent_stream(session, gateway.base_url, i) for i in range(200))))

        results = asyncio.run(main())
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        cost, _, requests = gateway.call(
            gateway.services.store.spend_totals("virtual_key", "vk-agent", start, start + timedelta(days=1))
        )
        check_no_false_402(results, cost, requests, AGENT_LIMIT_USD)


@pytest.mark.parametrize("reservation", ["block", "max_tokens"])
def test_a_stream_reserves_one_block_and_extends_block_by_block(
    tmp_path_factory: pytest.TempPathFactory, reservation: str
) -> None:
    # A 10,000-character answer (~3,300 tokens) asked with max_tokens 32,000, in 500-token blocks.
    config = {
        "virtual_keys": [{"id": "vk-blocks", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
        "pricing": {"long": {"input_cost_per_mtok": 10, "output_cost_per_mtok": 100}},
        "budgets": [{"id": "b-blocks", "virtual_key_id": "vk-blocks", "max_limit": 1, "reset_duration": "1d"}],
        "governance": {"default_max_tokens": 500, "stream_reservation": reservation},
    }
    with GatewayThread(config, tmp_path_factory.mktemp("blocks")) as gateway:
        client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
        messages = [{"role": "user", "content": "write a lot"}]
        if reservation == "max_tokens":  # all 32,000 tokens ($3.20) up front: more than the $1 budget
            with pytest.raises(anthropic.APIStatusError) as exc:
                client.messages.create(model="fake/long", max_tokens=32_000, stream=True, messages=messages)
            assert exc.value.status_code == 402
            return
        raw = client.messages.with_raw_response.create(
            model="fake/long", max_tokens=32_000, stream=True, messages=messages
        )
        remaining = float(raw.headers["x-sluice-budget-remaining-usd"])
        text = "".join(
            e.delta.text for e in raw.parse() if e.type == "content_block_delta" and e.delta.type == "text_delta"
        )
        assert len(text) == 9996  # the whole answer: every block was extended in time
        # Admission held the input estimate and one 500-token block ($0.05), not $3.20.
        assert 0.94 < remaining < 0.95
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        cost, tokens, requests = gateway.call(
            gateway.services.store.spend_totals("virtual_key", "vk-blocks", start, start + timedelta(days=1))
        )
        assert requests == 1 and tokens > 2000 and 0 < cost < 10**12
