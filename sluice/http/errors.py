"""THE mapping of error kinds to HTTP statuses and to each surface's error body and in-stream
error event."""

from __future__ import annotations

import math

import orjson

from sluice.core.canonical import Failure
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat
from sluice.formats import anthropic_messages, gemini, openai_chat, openai_responses
from sluice.formats.aws_eventstream import exception_for, exception_frame

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
    ErrorKind.GATEWAY_NOT_CONFIGURED: "provider_not_configured",
    ErrorKind.GATEWAY_UNSUPPORTED: "unsupported_route",
}


def status_of(err: SluiceError, wire: WireFormat) -> int:
    if err.kind is ErrorKind.POLICY_BUDGET_EXCEEDED and wire is WireFormat.OPENAI_RESPONSES:
        # Codex CLI retries a 402 five times but stops at once on 429 insufficient_quota.
        return 429
    status = STATUS[err.kind]
    if status == 529 and wire is not WireFormat.ANTHROPIC_MESSAGES:
        return 503  # 529 is Anthropic's own; other clients know 503
    return status


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
    if wire is WireFormat.ANTHROPIC_MESSAGES:
        reset = str(err.details.get("resets_at") or "").replace("+00:00", "Z")
        return {
            f"anthropic-ratelimit-{measure}-limit": limit,
            f"anthropic-ratelimit-{measure}-remaining": remaining,
            f"anthropic-ratelimit-{measure}-reset": reset,
        }
    return {
        f"x-ratelimit-limit-{measure}": limit,
        f"x-ratelimit-remaining-{measure}": remaining,
        f"x-ratelimit-reset-{measure}": f"{math.ceil(err.retry_after or 0)}s",
    }


def error_body(err: SluiceError, wire: WireFormat, status: int, request_id: str) -> bytes:
    if wire is WireFormat.ANTHROPIC_MESSAGES:
        return anthropic_messages.error_body(status, err.message, request_id)
    if wire is WireFormat.GEMINI:
        return gemini.error_body(status, err.message)
    return openai_chat.error_body(status, err.message, _openai_code(err, wire))


def failure_response(failure: Failure, wire: WireFormat, request_id: str) -> tuple[int, bytes]:
    """A provider's error answer, translated (`sluice.translation`), as the caller's surface would
    have said it: the provider's status and message in the caller's error body."""
    status = failure.status
    if status == 529 and wire is not WireFormat.ANTHROPIC_MESSAGES:
        status = 503
    if wire is WireFormat.ANTHROPIC_MESSAGES:
        return status, anthropic_messages.error_body(status, failure.message, request_id)
    if wire is WireFormat.GEMINI:
        return status, gemini.error_body(status, failure.message)
    return status, openai_chat.error_body(status, failure.message)


def stream_error_event(err: SluiceError, wire: WireFormat) -> bytes:
    """What to send when a stream fails after its headers went out."""
    status = status_of(err, wire)
    if wire is WireFormat.ANTHROPIC_MESSAGES:
        return anthropic_messages.error_event(status, err.message)
    if wire is WireFormat.OPENAI_RESPONSES:
        return openai_responses.error_event(status, err.message, _openai_code(err, wire))
    if wire is WireFormat.GEMINI:
        return gemini.error_event(status, err.message)
    return openai_chat.error_event(status, err.message, OPENAI_CODES.get(err.kind)) + openai_chat.DONE


def _openai_code(err: SluiceError, wire: WireFormat) -> str | None:
    if err.kind is ErrorKind.POLICY_BUDGET_EXCEEDED and wire is WireFormat.OPENAI_RESPONSES:
        return "insufficient_quota"
    return OPENAI_CODES.get(err.kind)


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
