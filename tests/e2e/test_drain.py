"""Graceful drain of a real `sluice serve` on SIGTERM: the listener closes at once (new
connections are refused), a stream in flight runs to its end, its request-log row, its spend and
its audit record are in the store once the process has exited, and the exit code is 0."""

from __future__ import annotations

import http.client
import signal
import socket
import sqlite3
import time
from pathlib import Path

import orjson

from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.upstream import FakeUpstreamThread

KEY = "sk-sluice-drain-0000000000000000"
MODEL = "claude-sonnet-4-5-20250929"  # in the shipped price table: the stream has a cost


def _config(upstream: FakeUpstreamThread) -> dict[str, object]:
    return {
        "providers": {"anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-drain"}]}},
        "virtual_keys": [{"id": "vk-drain", "value": KEY, "provider_configs": [{"provider": "anthropic"}]}],
        "budgets": [{"id": "b-drain", "virtual_key_id": "vk-drain", "max_limit": 100, "reset_duration": "1d"}],
        "audit": {"hmac_key": "drain-test-audit-key-0123456789abcdef"},
    }


def _post_stream(port: int, content: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = {"model": MODEL, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": content}]}
    conn.request(
        "POST",
        "/v1/messages",
        orjson.dumps(body),
        {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    return conn, conn.getresponse()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_sigterm_lets_the_stream_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    """Fails without the drain: uvicorn's own serve() re-raised SIGTERM after its shutdown (exit 143)."""
    with FakeUpstreamThread() as upstream:
        upstream.upstream.event_delay = 0.25  # a stream of a few seconds
        gw = GatewayProcess(_config(upstream), tmp_path).start()
        try:
            conn, resp = _post_stream(gw.port, "drain me " * 40)
            assert resp.status == 200
            request_id = resp.getheader("x-request-id")
            received = resp.read1()  # the first event is out: the stream is in flight
            assert b"message_start" in received
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 3
            while not _refused(gw.port):  # the listener closes at once
                assert time.monotonic() < deadline, "new connections are still accepted while draining"
                time.sleep(0.05)
            assert gw.proc.poll() is None, "the gateway exited with a stream in flight"
            while chunk := resp.read1():
                received += chunk
            assert received.rstrip().endswith(b'data: {"type":"message_stop"}'), received[-300:]
            conn.close()
            code = gw.proc.wait(timeout=40)
        finally:
            gw.stop()
        assert code == 0, gw.output()
    with sqlite3.connect(gw.db) as db:
        logged = db.execute(
            "SELECT status, stream, output_tokens, cost_pico FROM request_log WHERE request_id = ?", (request_id,)
        ).fetchall()
        spent = db.execute("SELECT cost_pico FROM spend_ledger WHERE request_id = ?", (request_id,)).fetchall()
        audited = db.execute("SELECT COUNT(*) FROM audit_log WHERE data LIKE ?", (f"%{request_id}%",)).fetchone()
    assert audited[0] >= 1, "the stream's audit record is not in the store"
    assert len(logged) == 1 and logged[0][0] == 200 and logged[0][1] and logged[0][2] > 0, logged
    assert spent == [(logged[0][3],)] and spent[0][0] > 0, spent


def test_the_grace_period_bounds_the_drain(tmp_path: Path) -> None:
    """A stream longer than --drain-seconds is cut when the grace period ends; the process still
    records it (as a client that went away) and exits 0."""
    with FakeUpstreamThread() as upstream:
        upstream.upstream.event_delay = 5  # far longer than the grace period
        gw = GatewayProcess(_config(upstream), tmp_path, args=("--drain-seconds", "1")).start()
        try:
            _, resp = _post_stream(gw.port, "x")
            request_id = resp.getheader("x-request-id")
            assert gw.proc is not None
            started = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            code = gw.proc.wait(timeout=30)
            took = time.monotonic() - started
        finally:
            gw.stop()
        assert code == 0, gw.output()
        assert took < 10, f"the drain took {took:.1f} s with a 1 s grace period"
        assert "cutting them" in gw.output()  # cut by the gateway, which then waited for it to record
    with sqlite3.connect(gw.db) as db:
        logged = db.execute("SELECT status FROM request_log WHERE request_id = ?", (request_id,)).fetchall()
    assert len(logged) == 1, logged


def test_the_first_event_is_not_held_back_until_the_next(tmp_path: Path) -> None:
    """Stream TTFB: the headers and the first event reach the client as soon as the provider sent
    them, not when a second event or a buffer fills. The provider waits 1.5 s before every event:
    the first must arrive after about 1.5 s, not 3."""
    with FakeUpstreamThread() as upstream:
        upstream.upstream.event_delay = 1.5
        with GatewayProcess(_config(upstream), tmp_path) as gw:
            started = time.monotonic()
            conn, resp = _post_stream(gw.port, "first byte")
            first = resp.read1()
            took = time.monotonic() - started
            conn.close()
    assert b"message_start" in first
    assert took < 2.6, f"the first event took {took:.2f} s"
