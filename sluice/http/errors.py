"""THE mapping of error kinds to HTTP statuses and to each surface's error body and in-stream
error event."""

from __future__ import annotations

import math
from datetime import datetime

import orjson

from sluice.core.canonical import Failure
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat
from sluice.formats.aws_eventstream import exception_for, exception_frame
from sluice.formats.registry import record_of
from sluice.gateway_signin import usage

STATUS: dict[ErrorKind, int] = {
    ErrorKind.CALLER_MISSING_KEY: 401,
    ErrorKind.CALLER_INVALID_KEY: 401,
    ErrorKind.CALLER_BAD_REQUEST: 400,
    ErrorKind.CALLER_NOT_FOUND: 404,
    ErrorKind.CALLER_UNKNOWN_MODEL: 404,
    ErrorKind.CALLER_UNTRANSLATABLE: 400,
    ErrorKind.POLICY_KEY_INACTIVE: 403,
    ErrorKind.POLICY_MODEL_DENIED: 403,
    ErrorKind.POLICY_BUDGET_EXCEEDED: 402,
    ErrorKind.POLICY_BUDGET_BUSY: 429,
    ErrorKind.POLICY_RATE_LIMITED: 429,
    ErrorKind.POLICY_UNPRICED: 403,
    ErrorKind.POLICY_GUARDRAIL: 403,
    ErrorKind.POLICY_STOPPED: 403,
    ErrorKind.PROVIDER_ERROR: 502,
    ErrorKind.PROVIDER_RATE_LIMITED: 429,
    ErrorKind.PROVIDER_OVERLOADED: 529,
    ErrorKind.PROVIDER_TIMEOUT: 504,
    ErrorKind.PROVIDER_UNREACHABLE: 502,
    ErrorKind.PROVIDER_AUTH: 502,
    ErrorKind.PROVIDER_STREAM_BROKEN: 502,
    ErrorKind.PROVIDER_REFUSED: 502,
    ErrorKind.GATEWAY_INTERNAL: 500,
    ErrorKind.GATEWAY_NOT_CONFIGURED: 503,
    ErrorKind.GATEWAY_UNSUPPORTED: 400,
    ErrorKind.GATEWAY_SATURATED: 503,
}

# OpenAI-style machine-readable codes, so scripts can tell policy decisions apart.
OPENAI_CODES: dict[ErrorKind, str] = {
    ErrorKind.CALLER_MISSING_KEY: "missing_api_key",
    ErrorKind.CALLER_INVALID_KEY: "invalid_api_key",
    ErrorKind.POLICY_KEY_INACTIVE: "virtual_key_inactive",
    ErrorKind.POLICY_MODEL_DENIED: "model_not_allowed",
    ErrorKind.POLICY_BUDGET_EXCEEDED: "budget_exceeded",
    # Not `insufficient_quota` (Codex stops for good on that one): a code Codex retries.
    ErrorKind.POLICY_BUDGET_BUSY: "rate_limit_exceeded",
    ErrorKind.POLICY_RATE_LIMITED: "rate_limit_exceeded",
    ErrorKind.POLICY_UNPRICED: "model_not_priced",
    ErrorKind.POLICY_GUARDRAIL: "guardrail_blocked",
    ErrorKind.POLICY_STOPPED: "stopped_by_admin",
    ErrorKind.GATEWAY_NOT_CONFIGURED: "provider_not_configured",
    ErrorKind.GATEWAY_UNSUPPORTED: "unsupported_route",
}


def status_of(err: SluiceError, wire: WireFormat) -> int:
    record = record_of(wire)
    special = record.refusals.get(err.kind)
    if special is not None:
        return special[0]
    return record.status(STATUS[err.kind])


def error_headers(err: SluiceError, wire: WireFormat) -> dict[str, str]:
    headers = {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
    measure = err.details.get("measure")
    if err.kind is ErrorKind.POLICY_RATE_LIMITED and measure in ("requests", "tokens"):
        headers.update(_rate_limit_headers(err, str(measure), wire))
    if err.kind.fault in ("caller", "policy") and not err.kind.retryable:
        # The official SDKs honour this and do not retry a refusal that cannot change.
        headers["x-should-retry"] = "false"
    return headers


def _rate_limit_headers(err: SluiceError, measure: str, wire: WireFormat) -> dict[str, str]:
    """The rate-limit headers each API's own clients read."""
    limit, remaining = str(err.details.get("limit_value", "")), str(err.details.get("remaining", ""))
    reset = str(err.details.get("resets_at") or "")
    return record_of(wire).rate_limit_headers(measure, limit, remaining, reset, err.retry_after)


def error_body(err: SluiceError, wire: WireFormat, status: int, request_id: str) -> bytes:
    return record_of(wire).error_body(status, err.message, _code(err, wire), request_id)


def signed_in_budget_refusal(err: SluiceError, request_id: str, now: datetime) -> tuple[int, bytes, dict[str, str]]:
    """A spent budget of a caller signed in through the gateway sign-in, as Claude Code expects it
    (sluice.gateway_signin.usage): 429 with a `billing_error` body and the usage-limit headers."""
    headers, message = usage.refusal(err, now)
    body = record_of(WireFormat.ANTHROPIC_MESSAGES).error_body(402, message, None, request_id)  # 402: billing_error
    return 429, body, {**headers, "x-request-id": request_id}


def failure_response(failure: Failure, wire: WireFormat, request_id: str) -> tuple[int, bytes]:
    """A provider's error answer, translated (`sluice.translation`), as the caller's surface would
    have said it: the provider's status and message in the caller's error body."""
    record = record_of(wire)
    status = record.status(failure.status)
    return status, record.error_body(status, failure.message, None, request_id)


def stream_error_event(err: SluiceError, wire: WireFormat) -> bytes:
    """What to send when a stream fails after its headers went out."""
    return record_of(wire).error_event(status_of(err, wire), err.message, _code(err, wire))


def _code(err: SluiceError, wire: WireFormat) -> str | None:
    """The machine-readable code of an error body (the formats that have one)."""
    special = record_of(wire).refusals.get(err.kind)
    return special[1] if special is not None else OPENAI_CODES.get(err.kind)


# The Bedrock surface (sluice.http.cloud): AWS's error shape, `x-amzn-errortype` and `{"message"}`.
_AMZN_ERROR_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_EXCEPTIONS = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    402: "ServiceQuotaExceededException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    429: "ThrottlingException",
    503: "ServiceUnavailableException",
    504: "ModelTimeoutException",
}


def bedrock_error(status: int, message: str) -> tuple[int, bytes, dict[str, str]]:
    status = 503 if status == 529 else status  # 529 is Anthropic's own; Bedrock says 503
    name = _EXCEPTIONS.get(status, "InternalServerException")
    return status, orjson.dumps({"message": message}), {"x-amzn-errortype": name + _AMZN_ERROR_SUFFIX}


def bedrock_error_of_anthropic(status: int, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    try:
        message = str(orjson.loads(body)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = body.decode("utf-8", "replace")[:500]
    return bedrock_error(status, message)


def bedrock_stream_error(err: SluiceError) -> bytes:
    """What to send when a Bedrock event stream fails after its headers went out."""
    return exception_frame(exception_for(status_of(err, WireFormat.ANTHROPIC_MESSAGES)), err.message)
