"""The error vocabulary: one exception, a closed set of kinds grouped by fault domain.

HTTP statuses and wire bodies are chosen in `sluice.http.errors`, never here, so the core stays
free of any surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class _KindInfo:
    code: str  # unique, so no two kinds alias each other in the Enum
    fault: str
    retryable: bool  # the same attempt may succeed if repeated later
    fallback: bool  # another provider/model may succeed where this one failed


class ErrorKind(Enum):
    # The caller sent something we cannot serve.
    CALLER_MISSING_KEY = _KindInfo("caller_missing_key", "caller", False, False)
    CALLER_INVALID_KEY = _KindInfo("caller_invalid_key", "caller", False, False)
    CALLER_BAD_REQUEST = _KindInfo("caller_bad_request", "caller", False, False)
    CALLER_NOT_FOUND = _KindInfo("caller_not_found", "caller", False, False)
    CALLER_UNKNOWN_MODEL = _KindInfo("caller_unknown_model", "caller", False, False)
    # The request cannot be translated into the format of the provider it was routed to. Refused
    # (400) for the primary target; a fallback target of another format may still take it.
    CALLER_UNTRANSLATABLE = _KindInfo("caller_untranslatable", "caller", False, True)
    # A policy of the platform team says no.
    POLICY_KEY_INACTIVE = _KindInfo("policy_key_inactive", "policy", False, False)
    POLICY_MODEL_DENIED = _KindInfo("policy_model_denied", "policy", False, False)
    POLICY_BUDGET_EXCEEDED = _KindInfo("policy_budget_exceeded", "policy", False, False)
    # The budget is not spent, but requests in flight hold what is left until they settle: the
    # same request succeeds shortly (a 429 with Retry-After, never a 402).
    POLICY_BUDGET_BUSY = _KindInfo("policy_budget_busy", "policy", True, False)
    POLICY_RATE_LIMITED = _KindInfo("policy_rate_limited", "policy", True, False)
    # A dollar budget applies and nothing prices the model: it would pass every budget at $0.
    POLICY_UNPRICED = _KindInfo("policy_unpriced", "policy", False, False)
    POLICY_GUARDRAIL = _KindInfo("policy_guardrail", "policy", False, False)  # a `block` guardrail rule
    # The kill switch is thrown on the request's session, key, team or the organisation, or a
    # runaway detector paused its session (sluice.sessions.stops): refused until an admin resumes it.
    POLICY_STOPPED = _KindInfo("policy_stopped", "policy", False, False)
    # The upstream provider failed.
    PROVIDER_ERROR = _KindInfo("provider_error", "provider", True, True)
    PROVIDER_RATE_LIMITED = _KindInfo("provider_rate_limited", "provider", True, True)
    PROVIDER_OVERLOADED = _KindInfo("provider_overloaded", "provider", True, True)
    PROVIDER_TIMEOUT = _KindInfo("provider_timeout", "provider", True, True)
    PROVIDER_UNREACHABLE = _KindInfo("provider_unreachable", "provider", True, True)
    PROVIDER_AUTH = _KindInfo("provider_auth", "provider", False, True)
    PROVIDER_STREAM_BROKEN = _KindInfo("provider_stream_broken", "provider", False, False)
    # The provider answered an error that neither a retry nor another provider is expected to
    # change (a 5xx status such as 501): its answer goes to the caller as it is.
    PROVIDER_REFUSED = _KindInfo("provider_refused", "provider", False, False)
    # Sluice itself failed or is not set up for this.
    GATEWAY_INTERNAL = _KindInfo("gateway_internal", "gateway", False, False)
    GATEWAY_NOT_CONFIGURED = _KindInfo("gateway_not_configured", "gateway", False, True)
    GATEWAY_UNSUPPORTED = _KindInfo("gateway_unsupported", "gateway", False, False)
    # The gateway has no room for another upstream connection: the provider's connection cap is
    # reached and no slot freed within its pool timeout, or the process ran out of sockets. Not the
    # provider's fault, so no circuit breaker counts it; the same request succeeds shortly (503
    # with Retry-After), and another provider, with its own pool, may take it now.
    GATEWAY_SATURATED = _KindInfo("gateway_saturated", "gateway", True, True)

    @property
    def fault(self) -> str:
        return self.value.fault

    @property
    def retryable(self) -> bool:
        return self.value.retryable

    @property
    def fallback(self) -> bool:
        return self.value.fallback


class SluiceError(Exception):
    """Any failure Sluice reports to a caller. `message` must be safe to show: no secrets."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        retry_after: float | None = None,
        upstream_status: int | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.upstream_status = upstream_status
        self.details = details or {}

    def __repr__(self) -> str:
        return f"SluiceError({self.kind.name}, {self.message!r})"
