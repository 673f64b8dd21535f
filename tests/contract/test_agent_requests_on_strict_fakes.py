"""The agents' own recorded requests (tests/fixtures/{claude_code,codex,gemini_cli}), sent through the gateway to
another vendor's model, reach a fake as strict as that vendor's API, and the turn after a tool call keeps the
round-trip state the vendor requires (Anthropic thinking blocks, Gemini 3 thought signatures). The cases marked
were xfail while issue 13 and others of their kind were open: the fake refuses what the real API refuses, and the
marks went with the translation fixes (branch fidelity)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.contract.conftest import ANTHROPIC_SECRET, OPENAI_SECRET
from tests.fakes.upstream import FakeUpstreamThread
from tests.fakes.wire_kit import FIXTURES
from tests.support import GatewayThread

KEY = "sk-sluice-strict-0000000000000000"
GEMINI_SECRET = "AIza-upstream-SECRET-0123456789"


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    config = {
        "providers": {
            "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": ANTHROPIC_SECRET}]},
            "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": OPENAI_SECRET}]},
            "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": GEMINI_SECRET}]},
        },
        "virtual_keys": [
            {
                "id": "vk-strict",
                "value": KEY,
                "provider_configs": [{"provider": p} for p in ("anthropic", "openai", "gemini")],
            }
        ],
    }
    with GatewayThread(config, tmp_path_factory.mktemp("strict")) as gw:
        yield gw


def _fixture(path: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / path).read_bytes())
    return doc


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_claude_codes_request_on_an_openai_model(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    # Claude Code's metadata.user_id is a ~150-character JSON string; OpenAI takes a `user` of 64 at most.
    body = {**_fixture("claude_code/messages_request.json"), "model": "gpt-4o-mini"}
    assert len(body["metadata"]["user_id"]) > 64
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    status, text = _post(gateway.base_url + "/v1/messages", body, headers)
    assert status == 200, text


def test_gemini_clis_request_on_a_claude_model(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    # Gemini CLI sends temperature, topP and topK; Claude Sonnet 4.5 and later take temperature or top_p, not both.
    body = _fixture("gemini_cli/stream_generate_content_request.json")
    assert {"temperature", "topP"} <= set(body["generationConfig"])
    path = "/v1beta/models/claude-sonnet-4-6:streamGenerateContent?alt=sse"
    status, text = _post(gateway.base_url + path, body, {"x-goog-api-key": KEY})
    assert status == 200, text
    assert '"error"' not in text, text


def test_codex_tool_loop_on_a_claude_model_with_reasoning(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    # Codex's reasoning effort becomes Anthropic thinking; Claude's answer starts with a signed thinking block,
    # which must come back (as an encrypted reasoning item) in the turn that answers the tool call, or thinking
    # must stay off: Anthropic refuses "a final `assistant` message must start with a thinking block".
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=KEY, max_retries=0)
    tools: Any = [
        {
            "type": "function",
            "name": "exec_command",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
        }
    ]
    asked: Any = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "please use a tool"}]}]
    common: Any = {
        "model": "claude-sonnet-4-6",
        "tools": tools,
        "reasoning": {"effort": "medium"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
    }
    first = client.responses.create(input=asked, **common)
    call = next(item for item in first.output if item.type == "function_call")
    replayed = [item.model_dump(exclude_none=True) for item in first.output]
    answer: Any = [*asked, *replayed, {"type": "function_call_output", "call_id": call.call_id, "output": "done"}]
    second = client.responses.create(input=answer, **common)
    assert second.status == "completed"


def test_claude_code_tool_loop_on_a_gemini_3_model(gateway: GatewayThread, upstream: FakeUpstreamThread) -> None:
    # Gemini 3 puts a thoughtSignature on its function calls and requires it back on the next turn.
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    asked: Any = [{"role": "user", "content": "weather? use a tool"}]
    first = client.messages.create(model="gemini-3-pro-preview", max_tokens=1024, tools=tools, messages=asked)
    tool_use = next(b for b in first.content if b.type == "tool_use")
    history: Any = [
        *asked,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}]},
    ]
    second = client.messages.create(model="gemini-3-pro-preview", max_tokens=1024, tools=tools, messages=history)
    assert second.stop_reason == "end_turn"


def test_codexs_recorded_tool_result_turn_passes_through_to_openai(
    gateway: GatewayThread, upstream: FakeUpstreamThread
) -> None:
    # The same strict fake takes Codex's own second turn on OpenAI unchanged: the rules refuse only what is wrong.
    body = _fixture("codex/responses_request_tool_result.json")
    headers = {"authorization": f"Bearer {KEY}"}
    status, text = _post(gateway.base_url + "/v1/responses", body, headers)
    assert status == 200, text
    assert "event: error" not in text and "response.failed" not in text, text


@pytest.mark.parametrize(
    ("fixture", "model"),
    [
        ("claude_code/messages_request.json", "gpt-5-mini"),
        ("claude_code/messages_request.json", "gemini-3-pro-preview"),
        ("claude_code/messages_request.json", "gemini-2.5-flash"),
    ],
)
def test_claude_codes_request_on_other_model_families(
    gateway: GatewayThread, upstream: FakeUpstreamThread, fixture: str, model: str
) -> None:
    body = {**_fixture(fixture), "model": model}
    body["metadata"] = {"user_id": "short-user"}  # the `user` length of issue 13 is checked above
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    status, text = _post(gateway.base_url + "/v1/messages", body, headers)
    assert status == 200, text
    assert "event: error" not in text, text


@pytest.mark.parametrize(
    ("fixture", "model"),
    [
        ("gemini_cli/stream_generate_content_request.json", "gpt-5-mini"),
        ("gemini_cli/stream_generate_content_request.json", "gpt-4o-mini"),
        ("gemini_cli/stream_generate_content_request_gemini3.json", "claude-opus-4-7"),
        ("gemini_cli/stream_generate_content_tool_result.json", "gpt-4o-mini"),
    ],
)
def test_gemini_clis_request_on_other_model_families(
    gateway: GatewayThread, upstream: FakeUpstreamThread, fixture: str, model: str
) -> None:
    body = _fixture(fixture)
    status, text = _post(
        gateway.base_url + f"/v1beta/models/{model}:streamGenerateContent?alt=sse", body, {"x-goog-api-key": KEY}
    )
    assert status == 200, text
    assert '"error"' not in text, text


@pytest.mark.parametrize(
    "model",
    [
        "gemini-3-pro-preview",
        "gpt-4o-mini",
        "claude-haiku-4-5",
    ],
)
def test_codex_tool_loop_on_other_model_families(
    gateway: GatewayThread, upstream: FakeUpstreamThread, model: str
) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=KEY, max_retries=0)
    tools: Any = [{"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}]
    asked: Any = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "please use a tool"}]}]
    common: Any = {"model": model, "tools": tools, "store": False, "include": ["reasoning.encrypted_content"]}
    first = client.responses.create(input=asked, **common)
    call = next(item for item in first.output if item.type == "function_call")
    replayed = [item.model_dump(exclude_none=True) for item in first.output]
    answer: Any = [*asked, *replayed, {"type": "function_call_output", "call_id": call.call_id, "output": "done"}]
    second = client.responses.create(input=answer, **common)
    assert second.status == "completed"
