"""The caller's query string does not shape the upstream URL: the Anthropic provider forwards
only `beta=true` (the one parameter the Messages API takes), whatever else the caller adds.
Found by the hostile-input suite (tests/hostile)."""

from __future__ import annotations

import urllib.request

import pytest

from tests.contract.conftest import DEV_KEY
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
