"""The OpenAI Responses API (what Codex CLI speaks) through a running gateway, with the official
`openai` SDK: the fake provider answers in the Responses format, an OpenAI provider gets the body
and the stream byte for byte, and an exhausted budget is a 429 insufficient_quota."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.contract.conftest import log_entry
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-responses-00000000000000"
BROKE = "sk-sluice-responses-broke-0000000"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    config = {
        "virtual_keys": [
            {"id": "vk-codex", "value": KEY, "provider_configs": [{"provider": "fake"}]},
            {"id": "vk-broke", "value": BROKE, "provider_configs": [{"provider": "fake"}]},
        ],
        "pricing": {"echo": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 2}},
        "budgets": [
            {
                "id": "codex-budget",
                "virtual_key_id": "vk-broke",
                "max_limit": 0.000001,
                "reset_duration": "1d",
                "calendar_aligned": True,
            }
        ],
    }
    with GatewayThread(config, tmp_path_factory.mktemp("responses")) as gw:
        yield gw


def client(gateway: GatewayThread, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def test_responses_non_stream_and_usage_logged(gateway: GatewayThread) -> None:
    raw = client(gateway).responses.with_raw_response.create(
        model="fake/echo", input="hello codex", instructions="be brief", store=False
    )
    response = raw.parse()
    assert response.output_text == "echo: hello codex" and response.status == "completed"
    entry = log_entry(gateway, raw.headers["x-request-id"])
    assert entry["surface"] == "openai_responses" and entry["output_tokens"] > 0 and entry["cost_pico"] > 0


def test_responses_stream_like_codex(gateway: GatewayThread) -> None:
    # Codex streams, with store false, developer-role input items and encrypted reasoning asked for.
    with client(gateway).responses.stream(
        model="fake/echo",
        input=[
            {"role": "developer", "content": "you are codex"},
            {"role": "user", "content": [{"type": "input_text", "text": "fix the bug"}]},
        ],
        store=False,
        include=["reasoning.encrypted_content"],
        extra_body={"prompt_cache_key": "abc"},
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "echo: fix the bug" and final.usage is not None and final.usage.output_tokens > 0


def test_input_token_counting(gateway: GatewayThread) -> None:
    counted = client(gateway).post(
        "/responses/input_tokens", body={"model": "fake/echo", "input": "count me"}, cast_to=object
    )
    assert isinstance(counted, dict) and counted["input_tokens"] > 0


def test_exhausted_budget_is_429_insufficient_quota(gateway: GatewayThread) -> None:
    with pytest.raises(openai.RateLimitError) as exc:
        client(gateway, BROKE).responses.create(model="fake/echo", input="x")
    assert exc.value.code == "insufficient_quota"
    assert exc.value.body["type"] == "insufficient_quota"  # type: ignore[index]
    assert "Budget 'codex-budget'" in exc.value.message


def test_openai_provider_gets_the_body_and_stream_untouched(upstream: FakeUpstreamThread, tmp_path: Path) -> None:
    config: dict[str, Any] = {
        "providers": {"openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai"}]}},
        "virtual_keys": [{"id": "vk-o", "value": KEY, "provider_configs": [{"provider": "openai"}]}],
    }
    body = b'{"model":"gpt-5-codex","stream":true,"store":false,"input":[{"role":"user","content":"patch it"}]}'
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    with GatewayThread(config, tmp_path) as gw:
        request = urllib.request.Request(gw.base_url + "/v1/responses", data=body, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as resp:
            streamed = resp.read()
            request_id = resp.headers["x-request-id"]
        entry = log_entry(gw, request_id)
    [seen] = upstream.requests
    assert (seen.path, seen.body) == ("/v1/responses", body)
    assert [streamed] == upstream.upstream.streamed  # byte for byte
    usage = json.loads(streamed.split(b"event: response.completed\ndata: ")[1])["response"]["usage"]
    assert (entry["input_tokens"], entry["output_tokens"]) == (usage["input_tokens"], usage["output_tokens"])
