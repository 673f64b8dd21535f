"""Everything known about one inference request as it moves through the gateway."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Any

from sluice.core.types import Operation, Usage, WireFormat

_ids = random.Random(os.urandom(32))


def new_request_id() -> str:
    # 96 bits from a generator seeded once from the OS: unique without a syscall per request.
    # Request ids are identifiers, not secrets.
    return f"req_{_ids.getrandbits(96):024x}"


@dataclass(slots=True)
class RequestContext:
    request_id: str
    surface: WireFormat
    operation: Operation
    path: str
    started: float = field(default_factory=time.perf_counter)
    started_unix: float = field(default_factory=time.time)
    client: str = ""
    address: str = ""  # the client's network address, as the server saw it (throttling, audit)
    session_id: str | None = None
    user_id: str | None = None
    stream: bool = False
    # identity
    virtual_key_id: str | None = None
    virtual_key_name: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    # routing
    requested_model: str | None = None
    model: str | None = None
    provider: str | None = None
    provider_key_name: str | None = None
    # outcome
    status: int = 0
    decision: str = "allow"
    reason: str | None = None
    error_kind: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_pico: int = 0
    ttfb: float | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    route: str | None = None  # the routing rules and aliases that rewrote the model
    # set by governance: the authenticated key and the limits' reservation for this request
    virtual_key: Any = None
    admission: Any = None
    input_estimate: int = 0  # tokens, from the body size
    output_allowance: int = 0  # output tokens the reservation covers
    reserved_pico: int = 0  # the worst case the reservation holds: what an unmetered answer is charged
    usage_missing: bool = False  # a whole answer that reported no usage (charged `reserved_pico`)
    requested_tier: tuple[str, str] = ("", "")  # (service_tier, speed) the request asked for
    admitted: bool = False  # passed every limit: from here on the request is charged
    settled: bool = False
    # The stream's answer was whole: the provider's stream completed and its last event went out to
    # the caller. A caller that hangs up after that (Codex leaves at `response.completed`) is not gone.
    answered: bool = False
    audited: bool = False
    # audit content capture (off unless configured for the key or team)
    capture: bool = False
    captured_request: bytes | None = None
    captured_response: bytes | None = None
    captured_stream: list[str] | None = None

    def mark_first_byte(self) -> None:
        if self.ttfb is None:
            self.ttfb = time.perf_counter() - self.started

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
