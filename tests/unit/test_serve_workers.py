"""`sluice serve --workers`: who may run several processes, their own files, and the socket."""

from __future__ import annotations

import socket

import pytest

from sluice.cli.serve import workers_refusal
from sluice.cli.workers import own_files
from sluice.http import serving
from sluice.settings import parse_config


def test_more_than_one_worker_needs_the_redis_backend() -> None:
    local = parse_config({})
    shared = parse_config({"governance": {"backend": "redis", "redis_url": "redis://127.0.0.1:6379/5"}})
    assert workers_refusal(local, 1) is None
    assert workers_refusal(shared, 4) is None
    refusal = workers_refusal(local, 2)
    assert refusal is not None and "governance.backend: redis" in refusal
    assert workers_refusal(shared, 0) is not None


def test_each_worker_has_its_own_journal_and_spill_file() -> None:
    cfg = parse_config(
        {
            "governance": {"backend": "redis", "spend_journal_path": "/var/lib/sluice/spend.jsonl"},
            "request_log": {"spill_path": "/var/lib/sluice/spill.jsonl"},
        }
    )
    assert own_files(cfg, 0) is cfg  # one process: the configured paths
    one, two = own_files(cfg, 1), own_files(cfg, 2)
    assert one.governance.spend_journal_path == "/var/lib/sluice/spend.w1.jsonl"
    assert one.request_log.spill_path == "/var/lib/sluice/spill.w1.jsonl"
    assert two.governance.spend_journal_path == "/var/lib/sluice/spend.w2.jsonl"
    assert cfg.governance.spend_journal_path == "/var/lib/sluice/spend.jsonl"  # not changed in place
    assert one.governance.backend == "redis"  # everything else is the same


def test_a_bound_socket_takes_no_connection_before_the_server_listens() -> None:
    sock = serving.bind("127.0.0.1", 0, reuse_port=True)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        other = serving.bind("127.0.0.1", port, reuse_port=True)  # a second worker binds the same port
        other.close()
    finally:
        sock.close()
