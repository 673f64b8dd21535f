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


def _status_from(gw: GatewayThread, source: str, forwarded_for: str) -> bytes:
    host, port = gw.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
    sock.sendall(
        b"GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-sluice-wrong\r\n"
        + f"x-forwarded-for: {forwarded_for}\r\nconnection: close\r\n\r\n".encode()
    )
    answer = _read_all(sock)
    sock.close()
    return answer.partition(b"\r\n")[0]


def test_a_spoofed_forwarded_for_does_not_change_the_throttled_address(tmp_path: Path) -> None:
    # uvicorn believes X-Forwarded-For only from FORWARDED_ALLOW_IPS (default 127.0.0.1 and ::1);
    # 127.0.0.2 is a client like any other, so a new made-up address per guess gets it nothing.
    config = {"providers": {"fake": {}}, "auth": {"guard": {"failures_burst": 2, "failures_per_minute": 1}}}
    with GatewayThread(config, tmp_path) as gw:
        statuses = [_status_from(gw, "127.0.0.2", f"203.0.113.{n}") for n in range(4)]
        assert statuses[:2] == [b"HTTP/1.1 401 Unauthorized"] * 2, statuses
        assert statuses[2:] == [b"HTTP/1.1 429 Too Many Requests"] * 2, statuses
        # From a trusted proxy (loopback), the forwarded address is the client's own.
        assert _status_from(gw, "127.0.0.1", "198.51.100.7") == b"HTTP/1.1 401 Unauthorized"
