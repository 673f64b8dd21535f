"""The official `openai` SDK against a running gateway, in front of a fake OpenAI API."""

from __future__ import annotations

import json

import openai
import pytest

from tests.contract.conftest import DEV_KEY, FAKE_KEY, JUNIOR_KEY, LOCAL_KEY, OPENAI_SECRET, log_entry
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread


def client(gateway: GatewayThread, key: str = DEV_KEY, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + prefix, api_key=key, max_retries=0)


def test_chat_completion(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello openai"}], user="dana@example.com"
    )
    done = raw.parse()
    assert done.choices[0].message.content
    [seen] = upstream.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {OPENAI_SECRET}"
    assert DEV_KEY not in json.dumps(seen.headers)
    entry = log_entry(gateway, raw.headers["x-request-id"])
    assert entry["provider"] == "openai" and entry["user_id"] == "dana@example.com"
    assert done.usage is not None
    assert entry["input_tokens"] + entry["cache_read_tokens"] == done.usage.prompt_tokens
    assert entry["output_tokens"] == done.usage.completion_tokens
    assert entry["cost_pico"] > 0


def test_stream_with_include_usage_is_untouched(gateway: GatewayThread) -> None:
    chunks = list(
        client(gateway).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "stream"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_stream_without_include_usage_is_still_metered(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream quietly"}], stream=True
    )
    chunks = list(raw.parse())
    assert chunks and all(c.choices for c in chunks)  # the caller did not ask for the usage chunk
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    assert upstream.requests[-1].json()["stream_options"] == {"include_usage": True}
    entry = log_entry(gateway, raw.headers["x-request-id"])
    assert entry["output_tokens"] > 0 and entry["input_tokens"] > 0


def test_tool_calls_streamed(gateway: GatewayThread) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    stream = client(gateway).chat.completions.create(
        model="gpt-4o-mini",
        stream=True,
        tools=tools,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        messages=[{"role": "user", "content": "use a tool please"}],
    )
    names = [
        tc.function.name
        for c in stream
        if c.choices
        for tc in (c.choices[0].delta.tool_calls or [])
        if tc.function and tc.function.name
    ]
    assert names == ["lookup"]


def test_embeddings(gateway: GatewayThread) -> None:
    res = client(gateway).embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(res.data) == 2 and res.usage.prompt_tokens > 0


def test_models_lists_only_what_the_key_may_use(gateway: GatewayThread) -> None:
    ids = [m.id for m in client(gateway, JUNIOR_KEY).models.list()]
    assert ids == ["claude-haiku-4-5-20251001"]


def test_model_outside_allowlist(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client(gateway).chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
    assert exc.value.code == "model_not_allowed"
    assert "Model 'gpt-5' is not allowed for virtual key 'vk-dev'" in exc.value.message
    assert upstream.requests == []


def test_invalid_key(gateway: GatewayThread) -> None:
    with pytest.raises(openai.AuthenticationError) as exc:
        client(gateway, "sk-sluice-nope").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.code == "invalid_api_key"


def test_openai_prefix_and_fake_provider(gateway: GatewayThread) -> None:
    done = client(gateway, FAKE_KEY, "/openai/v1").chat.completions.create(
        model="fake/echo", messages=[{"role": "user", "content": "ping"}]
    )
    assert done.choices[0].message.content == "echo: ping"


def test_in_stream_error_after_first_byte(gateway: GatewayThread) -> None:
    with pytest.raises(openai.APIError):
        for _ in client(gateway, FAKE_KEY).chat.completions.create(
            model="fake/stream-abort", messages=[{"role": "user", "content": "x"}], stream=True
        ):
            pass


def test_openai_compatible_provider_without_credentials(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    upstream.upstream.require_auth = False  # like a vLLM or Ollama server on the local network
    raw = client(gateway, LOCAL_KEY).chat.completions.with_raw_response.create(
        model="meta-llama/Llama-3.1-8B-Instruct", messages=[{"role": "user", "content": "hi local"}]
    )
    assert "hi local" in (raw.parse().choices[0].message.content or "")
    seen = upstream.requests[-1]
    assert seen.path == "/v1/chat/completions" and "authorization" not in seen.headers
    assert seen.json()["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert log_entry(gateway, raw.headers["x-request-id"])["provider"] == "vllm"
