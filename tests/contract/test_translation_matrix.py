"""Any surface reaches any provider: each official SDK (anthropic, openai chat, openai responses, google-genai), against
each kind of upstream (Anthropic, OpenAI, Gemini fakes), streamed and whole, answering text or a forced tool call. The
caller sees its own format (content, tool name and arguments, its own stop reason, usage); the upstream sees its own;
the request log bills what the upstream reported. And the turn after a tool call: the call and its result reach the
upstream in its own shape, the result still answering its call (Gemini gives calls no ids: they are derived)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.conftest import ANTHROPIC_SECRET, OPENAI_SECRET, log_entry
from tests.contract.sdk_calls import SURFACES, TEXT_STOP, TOOL_NAME, TOOL_STOP, WIRES, call, needs_codecs, second_turn
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-matrix-0000000000000000"
GEMINI_SECRET = "AIza-upstream-SECRET-0123456789"
MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4o-mini", "gemini": "gemini-2.5-flash"}
NATIVE = {"anthropic": "anthropic", "openai_chat": "openai", "openai_responses": "openai", "gemini": "gemini"}


def matrix_config(upstream_url: str, **key: Any) -> dict[str, Any]:
    return {
        "providers": {
            "anthropic": {"base_url": upstream_url, "keys": [{"name": "a", "value": ANTHROPIC_SECRET}]},
            "openai": {"base_url": upstream_url + "/v1", "keys": [{"name": "o", "value": OPENAI_SECRET}]},
            "gemini": {"base_url": upstream_url, "keys": [{"name": "g", "value": GEMINI_SECRET}]},
        },
        "virtual_keys": [
            {
                "id": "vk-matrix",
                "value": KEY,
                "provider_configs": [{"provider": p} for p in MODELS],
                **key,
            }
        ],
    }


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    with GatewayThread(matrix_config(upstream.base_url), tmp_path_factory.mktemp("matrix")) as gw:
        yield gw


def upstream_path(surface: str, provider: str, stream: bool) -> str:
    if provider == "gemini":
        return f"/v1beta/models/{MODELS['gemini']}:{'streamGenerateContent' if stream else 'generateContent'}"
    if provider == "anthropic":
        return "/v1/messages"
    return "/v1/responses" if surface == "openai_responses" else "/v1/chat/completions"


def assert_own_format(doc: dict[str, Any], path: str, stream: bool) -> None:
    """The upstream got a body of its own API, not the caller's."""
    if path == "/v1/messages":
        assert isinstance(doc["max_tokens"], int) and doc["messages"][0]["role"] == "user"
        assert "contents" not in doc and "input" not in doc
    elif path == "/v1/chat/completions":
        assert doc["messages"] and "input" not in doc and "contents" not in doc
        if stream:
            assert doc["stream_options"]["include_usage"] is True  # so the stream can be metered
    elif path == "/v1/responses":
        assert doc["input"] and "messages" not in doc
    else:
        assert doc["contents"][0]["role"] == "user" and "model" not in doc and "messages" not in doc
    if "gemini" not in path:
        assert doc.get("stream", False) is stream


@pytest.mark.parametrize("tool", [False, True], ids=["text", "tool"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
@pytest.mark.parametrize("surface", SURFACES)
def test_every_surface_reaches_every_provider(
    gateway: GatewayThread, upstream: FakeUpstreamThread, surface: str, provider: str, stream: bool, tool: bool
) -> None:
    if NATIVE[surface] != provider:
        needs_codecs(surface, provider)
    prompt = "weather in Paris please"
    answer = call(surface, gateway.base_url, KEY, MODELS[provider], prompt, stream=stream, tool=tool)

    if tool:
        assert answer.tools == [(TOOL_NAME, {"location": prompt})]
        assert answer.stop == TOOL_STOP[surface]
    else:
        assert (answer.text, answer.tools) == ("echo: " + prompt, [])
        assert answer.stop == TEXT_STOP[surface]

    [seen] = upstream.requests
    path = upstream_path(surface, provider, stream)
    assert seen.path == path
    assert_own_format(seen.json(), path, stream)
    if path.endswith("streamGenerateContent"):
        assert seen.query == "alt=sse"

    entry = log_entry(gateway, answer.request_id)
    assert (entry["provider"], entry["model"], entry["status"]) == (provider, MODELS[provider], 200)
    assert answer.output_tokens == entry["output_tokens"] > 0
    assert answer.input_tokens == entry["input_tokens"] + entry["cache_read_tokens"] + entry["cache_write_tokens"] > 0
    assert entry["cost_pico"] > 0
    translated = [a.get("translated") for a in entry["attempts"]]
    wire = {"anthropic": "anthropic_messages", "openai": "openai_chat", "gemini": "gemini"}[provider]
    assert translated == [None if NATIVE[surface] == provider else f"{WIRES[surface].value}->{wire}"]


def call_and_result(path: str, doc: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    """((call id, name), (result's call id, result text)) from an upstream body, in that upstream's own format."""
    if path == "/v1/messages":
        use = next(b for m in doc["messages"] for b in m["content"] if isinstance(b, dict) and b["type"] == "tool_use")
        res = next(
            b for m in doc["messages"] for b in m["content"] if isinstance(b, dict) and b["type"] == "tool_result"
        )
        text = res["content"] if isinstance(res["content"], str) else res["content"][0]["text"]
        return (use["id"], use["name"]), (res["tool_use_id"], text)
    if path == "/v1/chat/completions":
        call = next(m for m in doc["messages"] if m.get("tool_calls"))["tool_calls"][0]
        tool = next(m for m in doc["messages"] if m["role"] == "tool")
        content = tool["content"] if isinstance(tool["content"], str) else tool["content"][0]["text"]
        return (call["id"], call["function"]["name"]), (tool["tool_call_id"], content)
    parts = [p for c in doc["contents"] for p in c["parts"]]
    call = next(p["functionCall"] for p in parts if "functionCall" in p)
    res = next(p["functionResponse"] for p in parts if "functionResponse" in p)
    return (call.get("id", call["name"]), call["name"]), (res.get("id", res["name"]), json.dumps(res["response"]))


@pytest.mark.parametrize("provider", list(MODELS))
@pytest.mark.parametrize("surface", SURFACES)
def test_a_tool_result_goes_back_as_the_providers_own(
    gateway: GatewayThread, upstream: FakeUpstreamThread, surface: str, provider: str
) -> None:
    if NATIVE[surface] == provider:
        pytest.skip("pass-through: the body goes as it came")
    needs_codecs(surface, provider)
    second_turn(surface, gateway.base_url, KEY, MODELS[provider], "weather in Paris please")
    [seen] = upstream.requests
    (call_id, name), (result_id, text) = call_and_result(seen.path, seen.json())
    assert name == TOOL_NAME and result_id == call_id  # the result answers the call it belongs to
    assert "sunny" in text
