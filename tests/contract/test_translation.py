"""What translation must keep besides the happy path: refusals in the caller's format, upstream errors (whole and
in-stream) in the caller's shape, exact billing of translated streams, fallbacks across formats, token counting
across formats, and Cursor's Responses-shaped bodies on /v1/chat/completions."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors, types

from tests.contract.conftest import log_entry
from tests.contract.sdk_calls import needs_codecs
from tests.contract.test_translation_matrix import KEY, MODELS, matrix_config
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

BUDGET_KEY = "sk-sluice-matrix-budget-00000000"
SKIP_KEY = "sk-sluice-matrix-skip-0000000000"


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    config = matrix_config(upstream.base_url, fallbacks=[MODELS["gemini"]])
    config["providers"]["local"] = {"type": "openai_compatible", "base_url": upstream.base_url + "/v1"}
    config["virtual_keys"][0]["provider_configs"].append({"provider": "local", "allowed_models": ["llama-3.1-8b"]})
    config["virtual_keys"].append(
        {"id": "vk-spend", "value": BUDGET_KEY, "provider_configs": [{"provider": p} for p in MODELS]}
    )
    config["virtual_keys"].append(
        {
            "id": "vk-skip",
            "value": SKIP_KEY,
            "provider_configs": [{"provider": p} for p in MODELS],
            "fallbacks": [MODELS["gemini"], MODELS["openai"]],
        }
    )
    config["budgets"] = [{"id": "b-spend", "virtual_key_id": "vk-spend", "max_limit": 10, "reset_duration": "1d"}]
    config["routing"] = {"retries": {"attempts": 1}}
    with GatewayThread(config, tmp_path_factory.mktemp("translation")) as gw:
        yield gw


def anthropic_client(gw: GatewayThread, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0)


def openai_client(gw: GatewayThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=KEY, max_retries=0)


def gemini_client(gw: GatewayThread) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gw.base_url))


# --- refusals and errors -------------------------------------------------------------------------------------------


def test_untranslatable_request_is_a_400_in_the_callers_format(
    gateway: GatewayThread, upstream: FakeUpstreamThread
) -> None:
    needs_codecs("openai_responses")
    # A Responses built-in tool has no Anthropic equivalent; an Anthropic server tool none in Chat Completions.
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(gateway).responses.create(
            model=MODELS["anthropic"], input="search", tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}]
        )
    assert "cannot be translated" in refused.value.message and "file_search" in refused.value.message
    with pytest.raises(anthropic.BadRequestError) as server_tool:
        anthropic_client(gateway).messages.create(
            model=MODELS["openai"],
            max_tokens=50,
            messages=[{"role": "user", "content": "search"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],  # type: ignore[list-item]
        )
    assert server_tool.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "cannot be translated" in server_tool.value.message
    assert upstream.requests == []  # nothing half-translated went out


def test_a_hosted_web_search_is_left_out_for_a_target_that_cannot_run_it(
    gateway: GatewayThread, upstream: FakeUpstreamThread
) -> None:
    needs_codecs("openai_responses")
    function = {"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {}}}
    raw = openai_client(gateway).responses.with_raw_response.create(
        model=MODELS["anthropic"], input="search", tools=[function, {"type": "web_search"}]
    )
    assert raw.parse().output_text == "echo: search"
    assert raw.headers["x-sluice-dropped-tools"] == "web_search"
    assert [t["name"] for t in upstream.requests[-1].json()["tools"]] == ["read_file"]
    [attempt] = log_entry(gateway, raw.headers["x-request-id"])["attempts"]
    assert attempt["dropped_tools"] == ["web_search"] and attempt["outcome"] == "ok"


def test_upstream_error_reaches_the_caller_in_its_own_shape(
    gateway: GatewayThread, upstream: FakeUpstreamThread
) -> None:
    needs_codecs("gemini")
    upstream.upstream.fail_next(400, times=1)  # OpenAI's invalid_request_error body
    with pytest.raises(anthropic.BadRequestError) as bad:
        anthropic_client(gateway).messages.create(
            model=MODELS["openai"], max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        )
    body: Any = bad.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert upstream.requests[-1].path == "/v1/chat/completions"

    upstream.upstream.fail_next(404, times=1)  # Anthropic's not_found_error, to a Gemini caller
    client = gemini_client(gateway)
    with pytest.raises(errors.ClientError) as missing:
        client.models.generate_content(model=MODELS["anthropic"], contents="hi")
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"


def test_in_stream_error_is_the_callers_in_stream_error(gateway: GatewayThread) -> None:
    needs_codecs("gemini")
    prompt = " ".join(f"word{i}" for i in range(40))
    text = ""
    with pytest.raises(anthropic.APIStatusError) as failed:
        with anthropic_client(gateway).messages.stream(
            model="gemini-2.5-flash-stream-error", max_tokens=200, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            for piece in stream.text_stream:
                text += piece
    assert text.startswith("echo: word0")  # some of the answer went out before the upstream failed
    assert "overloaded" in str(failed.value)


def test_gemini_json_schema_tools_reach_other_providers(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    needs_codecs("gemini")
    client = gemini_client(gateway)
    schema = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
    fn = types.FunctionDeclaration(name="get_weather", parameters_json_schema=schema)
    mode = types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.ANY)
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[fn])], tool_config=types.ToolConfig(function_calling_config=mode)
    )
    client.models.generate_content(model=MODELS["openai"], contents="Paris", config=config)
    sent = upstream.requests[-1].json()["tools"][0]["function"]["parameters"]
    assert sent["required"] == ["location"]


# --- billing and fallbacks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_translated_stream_settles_exactly_what_the_upstream_reported(
    gateway: GatewayThread, upstream: FakeUpstreamThread, provider: str
) -> None:
    needs_codecs(provider)
    before = _spend(gateway)
    prompt = "bill me exactly"
    with anthropic_client(gateway, BUDGET_KEY).messages.stream(
        model=MODELS[provider], max_tokens=100, messages=[{"role": "user", "content": prompt}]
    ) as stream:
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    [seen] = upstream.requests
    reported_input = max(1, len(seen.body) // 4)  # what every fake upstream reports
    reported_output = max(1, len("echo: " + prompt) // 4)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (reported_input, reported_output)
    row = log_entry(gateway, request_id)
    assert (row["input_tokens"], row["output_tokens"]) == (reported_input, reported_output)
    expected = gateway.services.engine.prices.cost_pico(MODELS[provider], _usage(reported_input, reported_output))
    after = _spend(gateway)
    spent = tuple(a - b for a, b in zip(after, before, strict=True))
    assert spent == (expected, reported_input + reported_output, 1)  # settled once, exactly
    assert row["cost_pico"] == expected > 0


def _spend(gateway: GatewayThread) -> tuple[int, int, int]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    totals = gateway.call(
        gateway.services.store.spend_totals("virtual_key", "vk-spend", start, start + timedelta(days=1))
    )
    return tuple(int(v) for v in totals)  # type: ignore[return-value]


def _usage(input_tokens: int, output_tokens: int) -> Any:
    from sluice.core.types import Usage

    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def test_fallback_to_a_provider_of_another_format(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    needs_codecs("gemini")
    upstream.upstream.fail_next(500, times=1)  # the Anthropic target fails; the key falls back to Gemini
    raw = openai_client(gateway).chat.completions.with_raw_response.create(
        model=MODELS["anthropic"], messages=[{"role": "user", "content": "fall over"}]
    )
    done = raw.parse()
    assert done.choices[0].message.content == "echo: fall over"
    assert raw.headers["x-sluice-fallback"] == MODELS["gemini"]
    assert [r.path for r in upstream.requests] == ["/v1/messages", f"/v1beta/models/{MODELS['gemini']}:generateContent"]
    entry = log_entry(gateway, raw.headers["x-request-id"])
    assert entry["provider"] == "gemini" and [a["outcome"] for a in entry["attempts"]] == ["upstream 500", "ok"]


def test_a_fallback_the_request_cannot_be_translated_for_is_skipped(
    gateway: GatewayThread, upstream: FakeUpstreamThread
) -> None:
    needs_codecs("gemini")
    # An image by URL: Gemini takes only Google file URIs, Chat Completions any URL.
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    messages: Any = [{"role": "user", "content": [image, {"type": "text", "text": "skip gemini"}]}]
    upstream.upstream.fail_next(500, times=1)  # the Anthropic primary fails
    raw = anthropic_client(gateway, SKIP_KEY).messages.with_raw_response.create(
        model=MODELS["anthropic"], max_tokens=50, messages=messages
    )
    assert raw.parse().content[0].text == "echo: skip gemini"  # type: ignore[union-attr]
    assert raw.headers["x-sluice-fallback"] == MODELS["openai"]
    assert [r.path for r in upstream.requests] == ["/v1/messages", "/v1/chat/completions"]
    entry = log_entry(gateway, raw.headers["x-request-id"])
    outcomes = [a["outcome"] for a in entry["attempts"]]
    assert outcomes == ["upstream 500", "CALLER_UNTRANSLATABLE", "ok"]

    # The same request with Gemini as the primary target is refused, as before.
    upstream.upstream.reset()
    with pytest.raises(anthropic.BadRequestError) as refused:
        anthropic_client(gateway, SKIP_KEY).messages.create(model=MODELS["gemini"], max_tokens=50, messages=messages)
    assert "cannot be translated" in refused.value.message and "Google file URIs" in refused.value.message
    assert upstream.requests == []


# --- token counting ------------------------------------------------------------------------------------------------


def test_token_counts_go_to_the_targets_counting_endpoint(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    needs_codecs("gemini", "openai_responses")
    counted = anthropic_client(gateway).messages.count_tokens(
        model=MODELS["gemini"], messages=[{"role": "user", "content": "count me"}]
    )
    assert counted.input_tokens > 0
    assert upstream.requests[-1].path == f"/v1beta/models/{MODELS['gemini']}:countTokens"
    assert upstream.requests[-1].json()["generateContentRequest"]["model"] == f"models/{MODELS['gemini']}"

    counted = anthropic_client(gateway).messages.count_tokens(
        model=MODELS["openai"], messages=[{"role": "user", "content": "count me"}]
    )
    assert counted.input_tokens > 0 and upstream.requests[-1].path == "/v1/responses/input_tokens"

    client = gemini_client(gateway)  # keep a reference: a collected Client closes its connection
    gem = client.models.count_tokens(model=MODELS["anthropic"], contents="count me")
    assert gem.total_tokens and upstream.requests[-1].path == "/v1/messages/count_tokens"
    assert set(upstream.requests[-1].json()) <= {"model", "messages", "system", "tools", "tool_choice", "thinking"}

    raw = openai_client(gateway).post(
        "/responses/input_tokens", body={"model": MODELS["anthropic"], "input": "count me"}, cast_to=object
    )
    assert isinstance(raw, dict) and raw["object"] == "response.input_tokens" and raw["input_tokens"] > 0


def test_a_provider_that_cannot_count_gets_a_local_estimate(
    gateway: GatewayThread, upstream: FakeUpstreamThread
) -> None:
    raw = anthropic_client(gateway).messages.with_raw_response.count_tokens(
        model="llama-3.1-8b", messages=[{"role": "user", "content": "x" * 400}]
    )
    assert raw.parse().input_tokens == 100  # 400 characters at four a token
    assert raw.headers["x-sluice-token-count"] == "estimate"
    assert upstream.requests == []


# --- Cursor --------------------------------------------------------------------------------------------------------


def cursor_body(model: str) -> dict[str, Any]:
    """What Cursor's agent mode posts to /v1/chat/completions (captured shapes, see docs/translation.md)."""
    return {
        "model": model,
        "input": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": [{"type": "input_text", "text": "fix the build"}]},
        ],
        "stream": True,
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "medium", "summary": "auto"},
        "text": {"verbosity": "low"},
        "stream_options": {"include_usage": True},
        "truncation": "auto",
        "prompt_cache_retention": "24h",
        "tools": [{"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {}}}],
    }


# Cursor asks for reasoning (its captured body has reasoning.effort), which OpenAI's models without reasoning refuse
# (gpt-4o-mini: "Unsupported parameter: 'reasoning.effort'"); its Responses body goes to OpenAI untouched.
CURSOR_MODELS = {"openai": "gpt-5-mini", "anthropic": MODELS["anthropic"]}


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_cursor_responses_body_on_chat_completions(
    gateway: GatewayThread, upstream: FakeUpstreamThread, provider: str
) -> None:
    needs_codecs("openai_responses")
    request = urllib.request.Request(
        gateway.base_url + "/v1/chat/completions",
        data=json.dumps(cursor_body(CURSOR_MODELS[provider])).encode(),
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and response.headers["content-type"].startswith("text/event-stream")
        text_body = response.read().decode()
    chunks = [json.loads(line[6:]) for line in text_body.splitlines() if line.startswith("data: {")]
    assert text_body.rstrip().endswith("data: [DONE]")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)  # Chat Completions back, as Cursor reads
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: fix the build"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0  # include_usage honoured
    [seen] = upstream.requests
    if provider == "openai":
        # The Responses body goes where it belongs, minus Chat's include_usage (the Responses API refuses it).
        sent = {k: v for k, v in cursor_body(CURSOR_MODELS[provider]).items() if k != "stream_options"}
        assert (seen.path, seen.json()) == ("/v1/responses", sent)  # everything else exactly as Cursor sent it
    else:
        assert seen.path == "/v1/messages" and seen.json()["system"]


@pytest.mark.parametrize("spaced", [True, False], ids=["mid-stream", "any-time"])
def test_translated_stream_outgrowing_its_budget_is_cut_in_the_callers_format(
    upstream: FakeUpstreamThread, tmp_path_factory: pytest.TempPathFactory, spaced: bool
) -> None:
    # 10 output tokens are reserved; the answer (about 200 characters) outgrows them, and the budget cannot cover
    # another block of 100,000, so the OpenAI stream is stopped and the Anthropic caller gets its own error. Spaced
    # out, the events arrive one by one and the cut comes mid-stream; otherwise it may come before the first byte
    # (a plain 402). Either way what the provider generated is billed.
    config = matrix_config(upstream.base_url)
    config["budgets"] = [{"id": "b-tiny", "virtual_key_id": "vk-matrix", "max_limit": 0.001, "reset_duration": "1d"}]
    config["governance"] = {"default_max_tokens": 100_000}
    prompt = "x" * 200
    upstream.upstream.event_delay = 0.02 if spaced else 0.0
    with GatewayThread(config, tmp_path_factory.mktemp("cut")) as gw:
        text = ""
        with pytest.raises(anthropic.APIStatusError) as cut:
            with anthropic_client(gw).messages.stream(
                model=MODELS["openai"], max_tokens=10, messages=[{"role": "user", "content": prompt}]
            ) as stream:
                for piece in stream.text_stream:
                    text += piece
        assert "Budget 'b-tiny'" in str(cut.value)
        if spaced:
            assert cut.value.response.status_code == 200  # headers had gone out: an in-stream error event
        row = log_entry(gw, cut.value.response.headers["x-request-id"])  # settled once the server closed it
        assert len(text) < len("echo: " + prompt)  # the rest was never sent
        start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        cost, _, requests = gw.call(
            gw.services.store.spend_totals("virtual_key", "vk-matrix", start, start + timedelta(days=1))
        )
        assert requests == 1 and 0 < cost <= 0.001 * 10**12  # what went out is billed, within the budget
        assert row["error_kind"] == "POLICY_BUDGET_EXCEEDED" and row["cost_pico"] == cost
