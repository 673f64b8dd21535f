"""The Gemini API surface with the official google-genai SDK (as Gemini CLI uses it): the fake
provider answers in Gemini's format; a Gemini provider gets the body and stream untouched."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from google import genai
from google.genai import errors, types

from tests.contract.conftest import log_entry
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-gemini-000000000000000"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    config = {
        "virtual_keys": [
            {
                "id": "vk-gem",
                "value": KEY,
                "provider_configs": [{"provider": "fake", "allowed_models": ["echo", "gemini-2.5-flash"]}],
            }
        ],
        "pricing": {"gemini-2.5-flash": {"input_cost_per_mtok": 0.3, "output_cost_per_mtok": 2.5}},
    }
    with GatewayThread(config, tmp_path_factory.mktemp("gemini")) as gw:
        yield gw


def client(gateway: GatewayThread, key: str = KEY) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=gateway.base_url))


def test_generate_content_and_stream(gateway: GatewayThread) -> None:
    c = client(gateway)
    answer = c.models.generate_content(model="gemini-2.5-flash", contents="hello gemini")
    assert answer.text == "echo: hello gemini"
    assert answer.usage_metadata is not None and answer.usage_metadata.candidates_token_count
    pieces = [
        chunk.text or "" for chunk in c.models.generate_content_stream(model="gemini-2.5-flash", contents="stream it")
    ]
    assert "".join(pieces) == "echo: stream it"
    counted = c.models.count_tokens(model="gemini-2.5-flash", contents="count me")
    assert counted.total_tokens and counted.total_tokens > 0
    rows = [r for r in gateway.request_log() if r["surface"] == "gemini" and r["stream"]]
    assert rows and rows[0]["output_tokens"] > 0 and rows[0]["cost_pico"] > 0


def test_errors_in_googles_shape(gateway: GatewayThread) -> None:
    c = client(gateway)  # keep a reference: a collected Client closes its connection
    with pytest.raises(errors.ClientError) as denied:
        c.models.generate_content(model="gemini-2.5-pro", contents="x")
    assert denied.value.code == 403 and denied.value.status == "PERMISSION_DENIED"
    assert "not allowed for virtual key 'vk-gem'" in (denied.value.message or "")
    wrong = client(gateway, "sk-sluice-wrong")
    with pytest.raises(errors.ClientError) as unknown:
        wrong.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert unknown.value.code == 401 and unknown.value.status == "UNAUTHENTICATED"


def test_gemini_provider_pass_through(upstream: FakeUpstreamThread, tmp_path: Path) -> None:
    config = {
        "providers": {"gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-provider-key"}]}},
        "virtual_keys": [{"id": "vk-g", "value": KEY, "provider_configs": [{"provider": "gemini"}]}],
    }
    body = b'{"contents":[{"role":"user","parts":[{"text":"patch"}]}],"generationConfig":{"maxOutputTokens":64}}'
    path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    with GatewayThread(config, tmp_path) as gw:
        request = urllib.request.Request(
            gw.base_url + path + "?alt=sse",
            data=body,
            headers={"x-goog-api-key": KEY, "content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            streamed = resp.read()
            request_id = resp.headers["x-request-id"]
        entry = log_entry(gw, request_id)
    [seen] = upstream.requests
    assert (seen.path, seen.query, seen.body, seen.headers["x-goog-api-key"]) == (
        path,
        "alt=sse",
        body,
        "AIza-provider-key",
    )
    assert [streamed] == upstream.upstream.streamed  # byte for byte, CRLF framing included
    usage = json.loads(streamed.rstrip().split(b"\r\n\r\n")[-1][6:])["usageMetadata"]
    assert (entry["input_tokens"], entry["output_tokens"]) == (usage["promptTokenCount"], usage["candidatesTokenCount"])
