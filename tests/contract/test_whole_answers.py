"""A caller that leaves as soon as it has a stream's last event got the whole answer: the request log
says 200, on a key without budgets or rate limits too (Codex closes its connection at
`response.completed`, while the provider may still hold its own open)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-whole-answers-0000000000"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, FakeUpstreamThread]]:
    with FakeUpstreamThread() as upstream:
        config: dict[str, Any] = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-a"}]},
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-o"}]},
            },
            # No budgets, no rate limits: nothing is settled from the stream's usage before its last event.
            "virtual_keys": [
                {
                    "id": "vk-whole",
                    "value": KEY,
                    "provider_configs": [{"provider": "anthropic"}, {"provider": "openai"}],
                }
            ],
        }
        with GatewayThread(config, tmp_path_factory.mktemp("whole")) as gateway:
            yield gateway, upstream


def _leave_after(gateway: GatewayThread, path: str, body: bytes, auth: str, last_event: bytes) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n{auth}\r\n".encode()
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    deadline = time.monotonic() + 10
    while last_event not in received and time.monotonic() < deadline:  # the whole answer is here ...
        received += sock.recv(65536)
    assert last_event in received, received[-500:]
    sock.close()  # ... and the caller leaves before the provider closed its stream


@pytest.mark.parametrize(
    ("path", "model", "last_event"),
    [
        ("/v1/messages", "claude-sonnet-4-6", b"message_stop"),
        ("/v1/responses", "gpt-5.5", b"response.completed"),  # Codex on OpenAI: pass-through
        ("/v1/responses", "claude-sonnet-4-6", b"response.completed"),  # Codex on Claude: translated
    ],
)
def test_a_caller_leaving_at_the_last_event_of_a_key_without_limits_is_a_200(
    stack: tuple[GatewayThread, FakeUpstreamThread], path: str, model: str, last_event: bytes
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    upstream.upstream.tail_delay = 1.0  # the provider holds the connection after its last event
    if path == "/v1/messages":
        body = f'{{"model":"{model}","max_tokens":50,"stream":true,"messages":[{{"role":"user","content":"x"}}]}}'
        auth = f"x-api-key: {KEY}"
    else:
        body = f'{{"model":"{model}","stream":true,"store":false,"input":"x"}}'
        auth = f"authorization: Bearer {KEY}"
    before = len(gateway.request_log())
    _leave_after(gateway, path, body.encode(), auth, last_event)
    deadline = time.monotonic() + 5
    rows: list[dict[str, object]] = []
    while len(rows) <= before and time.monotonic() < deadline:
        rows = gateway.request_log()
        time.sleep(0.05)
    row = rows[0] if len(rows) > before else {}  # newest first
    assert (row.get("status"), row.get("decision"), row.get("model")) == (200, "allow", model)
    assert row["output_tokens"] and row["input_tokens"]


def test_a_caller_leaving_before_the_last_event_is_still_gone(
    stack: tuple[GatewayThread, FakeUpstreamThread],
) -> None:
    gateway, upstream = stack
    upstream.upstream.reset()
    upstream.upstream.event_delay = 0.2  # a stream that takes seconds
    body = b'{"model":"gpt-5.5","stream":true,"store":false,"input":"a longer prompt to answer slowly"}'
    before = len(gateway.request_log())
    _leave_after(gateway, "/v1/responses", body, f"authorization: Bearer {KEY}", b"response.created")
    deadline = time.monotonic() + 8
    rows: list[dict[str, object]] = []
    while len(rows) <= before and time.monotonic() < deadline:
        rows = gateway.request_log()
        time.sleep(0.05)
    assert len(rows) > before and rows[0]["status"] == 499 and rows[0]["reason"] == "client disconnected"
