"""The fixed facts of one inference request, and the record of one attempt at a provider.

The request's whole state, with the owner of each part, is `sluice.engine.context.RequestContext`.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from sluice.core.types import Operation, WireFormat

_ids = random.Random(os.urandom(32))
# A forked child would carry on the parent's sequence and make the same ids: it reseeds.
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_request_id() -> str:
    """`req_` and 32 hex digits: the Unix time in milliseconds (48 bits), then 80 random bits
    (UUIDv7's layout, RFC 9562 section 5.7), so ids sort by when they were made.

    The request log and the spend ledger are keyed by the request id: an id that grows with time
    is inserted at the right edge of their primary-key B-trees, in the page the previous one
    dirtied, where a random id dirties (and has to read, once the store outgrows the page cache)
    a page anywhere in them, on every commit (bench/sqlite_inserts.py). 80 random bits per
    millisecond keep ids from different processes and replicas apart. The random bits come from
    a generator seeded from the OS once per process, forked children included (no syscall per
    request): request ids are identifiers, not secrets."""
    return f"req_{time.time_ns() // 1_000_000:012x}{_ids.getrandbits(80):020x}"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Who asked what, where: fixed when the request arrives."""

    request_id: str
    surface: WireFormat
    operation: Operation
    path: str
    address: str = ""  # the client's network address, as the server saw it (throttling, audit)
    started: float = field(default_factory=time.perf_counter)
    started_unix: float = field(default_factory=time.time)


@dataclass(slots=True)
class Attempt:
    """One try at one provider (or a target passed over before any was chosen). The request log
    and the audit record get `as_dict()`: the fields that are set."""

    model: str
    provider: str | None = None
    key: str | None = None
    outcome: str | None = None  # "ok", "estimated", "upstream 429", an ErrorKind name; None while running
    translated: str | None = None  # "<caller's format>-><provider's format>"
    dropped_tools: tuple[str, ...] = ()  # optional vendor tools the target could not run
    status: int | None = None
    served_model: str | None = None  # the model the provider says answered, when not the one asked
    finish_reasons: tuple[str, ...] = ()  # why its answer ended, in the provider's words
    # perf_counter when the provider call was sent, and seconds until it answered or failed
    # (sluice.observability.observer); not in the request log.
    sent: float | None = None
    waited: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "outcome": self.outcome}
        if self.provider is not None:
            out["provider"] = self.provider
        if self.key is not None:
            out["key"] = self.key
        if self.translated is not None:
            out["translated"] = self.translated
        if self.dropped_tools:
            out["dropped_tools"] = list(self.dropped_tools)
        if self.status is not None:
            out["status"] = self.status
        if self.served_model is not None:
            out["served_model"] = self.served_model
        if self.finish_reasons:
            out["finish_reasons"] = list(self.finish_reasons)
        return out
