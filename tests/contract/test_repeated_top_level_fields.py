"""A body that names its content field twice at the top level (two `messages`, `input` or
`contents`): the gateway reads the last, as orjson does, and so do its guardrails; a provider whose
parser kept the first would be served a conversation nobody scanned. The provider gets exactly one,
the one scanned (sluice.http.sole_keys). Claude Code's own bodies, which nest `input` in every
`tool_use`, still pass byte for byte."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-repeat-dev-00000000000"
AKID = "AKIAQWERTYUIOPASDFGH"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8sXkL2Ab"
HIDDEN = f"AWS_ACCESS_KEY_ID={AKID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "claude_code" / "messages_request.json"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    with FakeUpstreamThread() as upstream:
        config: dict[str, Any] = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-repeat-up-0"}]},
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai-rep-0"}]},
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-repeat-key"}]},
            },
            "virtual_keys": [
                {
                    "id": "vk-r",
                    "value": KEY,
                    "provider_configs": [
                        {"provider": "anthropic", "allowed_models": ["claude-haiku-4-5", "claude-sonnet-4-6"]},
                        {"provider": "openai", "allowed_models": ["gpt-4o-mini"]},
                        {"provider": "gemini", "allowed_models": ["gemini-2.5-flash"]},
                    ],
                }
            ],
            "guardrails": {"placeholder_key": "repeat-test-key", "sets": {"standard": {}}},
        }
        with GatewayThread(config, tmp_path_factory.mktemp("repeat")) as gw:
            yield gw, upstream


def _post(gateway: GatewayThread, path: str, body: bytes) -> None:
    headers = {
        "authorization": f"Bearer {KEY}",
        "x-goog-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    request = urllib.request.Request(gateway.base_url + path, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200


def _hidden_first(field: str, hidden: object, seen: object) -> bytes:
    """`{field: hidden, field: seen, ...}` spelled by hand (no encoder writes a key twice)."""
    return b'{"%s": %s, "%s": %s' % (field.encode(), orjson.dumps(hidden), field.encode(), orjson.dumps(seen))


@pytest.mark.parametrize(
    ("path", "field", "hidden", "seen", "rest"),
    [
        (
            "/v1/messages",
            "messages",
            [{"role": "user", "content": f"my .env:\n{HIDDEN}"}],
            [{"role": "user", "content": "hello"}],
            b', "model": "claude-haiku-4-5", "max_tokens": 20}',
        ),
        (
            "/v1/chat/completions",
            "messages",
            [{"role": "user", "content": f"my .env:\n{HIDDEN}"}],
            [{"role": "user", "content": "hello"}],
            b', "model": "gpt-4o-mini"}',
        ),
        (
            "/v1/responses",
            "input",
            [{"role": "user", "content": f"my .env:\n{HIDDEN}"}],
            "hello",
            b', "model": "gpt-4o-mini"}',
        ),
        (
            "/v1beta/models/gemini-2.5-flash:generateContent",
            "contents",
            [{"role": "user", "parts": [{"text": f"my .env:\n{HIDDEN}"}]}],
            [{"role": "user", "parts": [{"text": "hello"}]}],
            b"}",
        ),
    ],
)
def test_the_provider_gets_only_the_scanned_copy_of_a_repeated_content_field(
    stack: tuple[GatewayThread, FakeUpstreamThread], path: str, field: str, hidden: object, seen: object, rest: bytes
) -> None:
    gateway, upstream = stack
    before = len(upstream.requests)
    _post(gateway, path, _hidden_first(field, hidden, seen) + rest)
    (sent,) = upstream.requests[before:]
    assert sent.body.count(b'"%s"' % field.encode()) == 1, sent.body
    assert AKID.encode() not in sent.body and SECRET.encode() not in sent.body
    assert sent.json()[field] == seen


def test_a_repeated_model_hidden_in_the_first_copy_of_messages_never_reaches_the_provider(
    stack: tuple[GatewayThread, FakeUpstreamThread],
) -> None:
    """The first `messages` hides a body of its own (another model, a larger limit) in the shape a
    lenient parser might splice in; the provider sees the last one only, with the allowed model."""
    gateway, upstream = stack
    before = len(upstream.requests)
    hidden = [{"role": "user", "content": "x"}], {"model": "claude-sonnet-4-6"}
    body = _hidden_first("messages", hidden, [{"role": "user", "content": "hi"}])
    _post(gateway, "/v1/messages", body + b', "model": "claude-haiku-4-5", "max_tokens": 20}')
    (sent,) = upstream.requests[before:]
    assert sent.body.count(b'"messages"') == 1 and b"claude-sonnet-4-6" not in sent.body
    assert sent.json()["model"] == "claude-haiku-4-5"


def test_claude_codes_own_body_passes_byte_for_byte(stack: tuple[GatewayThread, FakeUpstreamThread]) -> None:
    """Its `tool_use` blocks nest `input` and its Task tool's schema nests `model`: neither is a repeat."""
    gateway, upstream = stack
    doc = orjson.loads(FIXTURE.read_bytes())
    doc.update(model="claude-haiku-4-5", stream=False, max_tokens=20)
    for name in ("thinking", "context_management", "output_config"):  # as bench/guardrails.py does
        doc.pop(name, None)
    for n in range(3):
        use = {"type": "tool_use", "id": f"toolu_{n:024d}", "name": "Read", "input": {"file_path": f"f{n}.py"}}
        doc["messages"].append({"role": "assistant", "content": [use]})
        result = {"type": "tool_result", "tool_use_id": use["id"], "content": "print(1)"}
        doc["messages"].append({"role": "user", "content": [result]})
    doc["messages"].append({"role": "user", "content": "Now fix the failing test."})
    body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)  # its own spacing, which a re-encoding would lose
    before = len(upstream.requests)
    _post(gateway, "/v1/messages", body)
    (sent,) = upstream.requests[before:]
    assert sent.body == body
