"""Authentication before the body and bounded headers, over a real uvicorn (httptools) server and
raw sockets: the refusal comes while the caller is still sending, and the rest is never read."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import GatewayThread


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    tmp = tmp_path_factory.mktemp("auth-edge")
    config = {"providers": {"fake": {}}, "auth": {"guard": {"throttle": False}}}
    with GatewayThread(config, Path(tmp)) as gateway:
        yield gateway


def _connect(gw: GatewayThread) -> socket.socket:
    host, port = gw.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_refused_caller_is_answered_before_its_body_is_sent(gw: GatewayThread) -> None:
    sock = _connect(gw)
    announced = 50 * 1024 * 1024
    head = (
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"x-api-key: sk-sluice-wrong\r\nanthropic-version: 2023-06-01\r\ncontent-length: {announced}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"x" * (128 * 1024))  # 128 KiB of the 50 MiB announced
    answer = _read_all(sock)  # the gateway answers and closes without waiting for the rest
    sock.close()
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 401 Unauthorized", answer[:300]
    assert b"connection: close" in rest.lower()
    assert b'"type":"authentication_error"' in rest  # in Anthropic's shape


def test_oversized_headers_get_431(gw: GatewayThread) -> None:
    sock = _connect(gw)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-junk: " + b"a" * 20_000 + b"\r\n\r\n")
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
