"""Regression tests for what the hostile-input suite (tests/hostile) and its review found: the
caller's query string does not shape the upstream URL, and a body naming a governed field twice
reaches the upstream as the gateway read it."""

from __future__ import annotations

import urllib.error
import urllib.request

import orjson
import pytest

from tests.contract.conftest import DEV_KEY, JUNIOR_KEY, log_entry
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

BODY = b'{"model":"claude-sonnet-4-6","max_tokens":20,"messages":[{"role":"user","content":"q"}]}'
HEADERS = {"authorization": f"Bearer {DEV_KEY}", "anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.mark.parametrize(
    "query,forwarded",
    [
        ("beta=true", "beta=true"),
        ("beta=true&key=attacker-key", "beta=true"),
        ("key=attacker-key&beta=true&x=%00", "beta=true"),
        ("api-version=2024-01-01", ""),
        ("beta=false", ""),
    ],
)
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_only_the_beta_flag_of_the_callers_query_reaches_anthropic(
    gateway: GatewayThread, upstream: FakeUpstreamThread, path: str, query: str, forwarded: str
) -> None:
    request = urllib.request.Request(f"{gateway.base_url}{path}?{query}", data=BODY, headers=HEADERS, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
    (sent,) = upstream.requests
    assert (sent.path, sent.query) == (path, forwarded)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_a_duplicated_model_key_reaches_the_upstream_as_the_gateway_read_it(
    gateway: GatewayThread, upstream: FakeUpstreamThread, path: str
) -> None:
    # The junior key may use Haiku only. orjson (the gateway) reads the last "model"; an upstream
    # parser that keeps the first would have served Sonnet, past the allowlist and the price.
    allowed = "claude-haiku-4-5-20251001" if path == "/v1/messages" else "gpt-4o-mini"
    key = JUNIOR_KEY if path == "/v1/messages" else DEV_KEY
    body = (
        b'{"model": "claude-sonnet-4-6", "max_tokens": 20, "messages": [{"role": "user", "content": "q"}], '
        b'"model": "' + allowed.encode() + b'", "max_tokens": 10}'
    )
    headers = {**HEADERS, "authorization": f"Bearer {key}"}
    request = urllib.request.Request(gateway.base_url + path, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
    (sent,) = upstream.requests
    assert sent.body.count(b'"model"') == 1 and sent.body.count(b'"max_tokens"') == 1, sent.body
    assert sent.json()["model"] == allowed and sent.json()["max_tokens"] == 10


@pytest.mark.parametrize(
    "path,doc",
    [
        # A stream on Chat Completions: the engine asks for usage, so it re-encodes the body.
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": True, "messages": []}),
        # Anthropic Messages to an OpenAI model: the bridge re-encodes the request.
        ("/v1/messages", {"model": "gpt-4o-mini", "max_tokens": 16, "messages": []}),
    ],
)
def test_a_body_nested_past_what_can_be_re_encoded_is_a_400_not_a_500(
    gateway: GatewayThread, upstream: FakeUpstreamThread, path: str, doc: dict[str, object]
) -> None:
    depth = 300  # orjson reads up to 1024 levels but writes at most 254
    nested = b"[" * depth + b"]" * depth
    if path == "/v1/messages":  # a tool's schema survives translation, so the bridge must write it
        body = orjson.dumps({**doc, "messages": [{"role": "user", "content": "hi"}]})[:-1]
        body += b', "tools": [{"name": "t", "input_schema": {"type": "object", "default": ' + nested + b"}}]}"
    else:
        body = orjson.dumps({**doc, "messages": [{"role": "user", "content": "hi"}]})[:-1]
        body += b', "metadata_x": ' + nested + b"}"
    request = urllib.request.Request(gateway.base_url + path, data=body, headers=HEADERS, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert b"nested more than 254 levels" in refused.value.read()
    assert upstream.requests == []
    assert log_entry(gateway, refused.value.headers["x-request-id"])["status"] == 400
