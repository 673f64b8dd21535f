"""Request ids: unique, and ordered by the millisecond they were made in (the request log's and the
spend ledger's primary key: bench/sqlite_inserts.py)."""

from __future__ import annotations

import re
import time

import pytest

from sluice.core import context
from sluice.core.context import new_request_id

_SHAPE = re.compile(r"^req_[0-9a-f]{32}$")


def test_ids_have_one_shape_and_do_not_repeat() -> None:
    ids = [new_request_id() for _ in range(50_000)]
    assert all(_SHAPE.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_an_id_carries_the_millisecond_it_was_made_in() -> None:
    before = time.time_ns() // 1_000_000
    made = int(new_request_id()[4:16], 16)
    after = time.time_ns() // 1_000_000
    assert before <= made <= after


def test_ids_of_later_milliseconds_sort_after_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1_795_000_000_000, 1_795_000_000_000 + 200))
    monkeypatch.setattr(context.time, "time_ns", lambda: next(clock) * 1_000_000)
    ids = [new_request_id() for _ in range(200)]
    assert ids == sorted(ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.close(read)
        os.write(write, new_request_id()[16:].encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child and child != new_request_id()[16:]  # the random part: reseeded, not the parent's next
