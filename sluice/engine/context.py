"""Everything known about one inference request as it moves through the gateway, by owner.

- `request` (`RequestRecord`, immutable, made by the edge): which request, on which surface and
  path, from which network address, when.
- The caller's facts (`client`, `session_id`, `user_id`, `stream`), filled by the edge from the
  headers and the body (`sluice.http.identity.fill_caller`) and by `Engine.run` (`stream`); the
  key (`key`), set once by `Engine.authenticate`.
- `charge`: the request's reservation and settlement, owned by `sluice.engine.charge.Charge`.
- `attempts`: one typed `Attempt` per target tried, written by `sluice.engine.targets` and
  `sluice.engine.attempt`.
- The outcome (`status`, `decision`, `reason`, `error_kind`, `usage`, `cost_pico`): written by
  the engine, or through `refuse` by the edge when it answers with an error itself.
- `delivered`: set by the edge once the answer's last byte went out to the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sluice.core.context import Attempt, RequestRecord
from sluice.core.types import Operation, Usage, WireFormat
from sluice.engine.charge import Charge
from sluice.guardrails.service import RequestGuard
from sluice.sessions.stops import Haltable
from sluice.storage.records import VirtualKey


@dataclass(slots=True)
class RequestContext:
    request: RequestRecord
    # the caller's facts, from the headers and the body (sluice.http.identity)
    client: str = ""
    session_id: str | None = None
    user_id: str | None = None
    # where the agent works, when it says so (x-sluice-repo, x-sluice-branch, x-sluice-cwd)
    repo: str | None = None
    branch: str | None = None
    cwd: str | None = None
    stream: bool = False
    # who: the authenticated key (Engine.authenticate)
    key: VirtualKey | None = None
    signed_in: bool = False  # the key came from a gateway sign-in token (sluice.gateway_signin)
    # routing
    requested_model: str | None = None
    model: str | None = None
    provider: str | None = None
    provider_key_name: str | None = None
    route: str | None = None  # the routing rules and aliases that rewrote the model
    attempts: list[Attempt] = field(default_factory=list)
    # the request's reservation and settlement (sluice.engine.charge); None until the first attempt
    charge: Charge | None = None
    # outcome
    status: int = 0
    decision: str = "allow"
    reason: str | None = None
    error_kind: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_pico: int = 0
    ttfb: float | None = None
    # The answer's last byte went out to the caller (set by the edge). A caller that hangs up after
    # that (Codex leaves at `response.completed`, before the provider closes) is not gone.
    delivered: bool = False
    # The provider's stream completed and its last event was handed to the edge (set by the engine).
    answer_complete: bool = False
    audited: bool = False
    # audit content capture (off unless configured for the key or team)
    capture: bool = False
    captured_request: bytes | None = None
    captured_response: bytes | None = None
    captured_stream: list[str] | None = None
    guardrail: RequestGuard | None = None  # this request's guardrails (sluice.guardrails.service)
    # The stream loop answering it, while the kill switch watches it (sluice.sessions.stops).
    stream_loop: Haltable | None = None

    # The record's and the key's facts, read where a flat name is clearer.
    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def surface(self) -> WireFormat:
        return self.request.surface

    @property
    def operation(self) -> Operation:
        return self.request.operation

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def address(self) -> str:
        return self.request.address

    @property
    def started_unix(self) -> float:
        return self.request.started_unix

    @property
    def virtual_key_id(self) -> str | None:
        return self.key.id if self.key is not None else None

    @property
    def virtual_key_name(self) -> str | None:
        return self.key.name if self.key is not None else None

    @property
    def team_id(self) -> str | None:
        return self.key.team_id if self.key is not None else None

    @property
    def customer_id(self) -> str | None:
        return self.key.customer_id if self.key is not None else None

    def refuse(self, status: int, kind: str, message: str, *, denied: bool) -> None:
        """The request ended with an error the caller is told about (by the engine or the edge)."""
        self.status, self.error_kind, self.reason = status, kind, message
        self.decision = "deny" if denied else "error"

    def answered(self, usage: Usage) -> None:
        """The answer's usage is known: it is the request's, and its finish reasons are the
        answering attempt's (the last one), for the request log and the trace."""
        self.usage = usage
        if usage.finish_reasons and self.attempts:
            self.attempts[-1].finish_reasons = usage.finish_reasons

    def mark_first_byte(self) -> None:
        if self.ttfb is None:
            self.ttfb = time.perf_counter() - self.request.started

    def elapsed(self) -> float:
        return time.perf_counter() - self.request.started
