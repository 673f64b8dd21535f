"""Anthropic Messages API wire format (https://docs.anthropic.com/en/api/messages): its error
bodies and events, its usage object, what its stream events mean for metering, its rate-limit
headers, models list and token counting."""

from __future__ import annotations

import re
from typing import Any

import orjson

from sluice.core.types import Usage, count_of, finish_reason_of
from sluice.formats.record import EventReader, Seen
from sluice.formats.sse import SSEDecoder, encode, generated, parse_block

# HTTP status -> Anthropic error type (https://docs.anthropic.com/en/api/errors).
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# The fields the counting endpoint (`POST /v1/messages/count_tokens`) accepts.
COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"})


def error_type_for(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_body(status: int, message: str, code: str | None = None, request_id: str = "") -> bytes:
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type_for(status), "message": message}}
    if request_id:
        body["request_id"] = request_id
    return orjson.dumps(body)


def error_event(status: int, message: str, code: str | None = None) -> bytes:
    payload = {"type": "error", "error": {"type": error_type_for(status), "message": message}}
    return encode(orjson.dumps(payload), "error")


def usage_from(raw: dict[str, Any] | None, model: object = None) -> Usage:
    """The Messages usage object (https://docs.anthropic.com/en/api/messages#response-usage):
    1-hour cache writes under `cache_creation`, server-side web searches under `server_tool_use`."""
    if not isinstance(raw, dict):
        return Usage(served_model=model if isinstance(model, str) else "")
    creation = raw.get("cache_creation")
    tools = raw.get("server_tool_use")
    tier = raw.get("service_tier")
    return Usage(
        input_tokens=count_of(raw.get("input_tokens")),
        output_tokens=count_of(raw.get("output_tokens")),
        cache_read_tokens=count_of(raw.get("cache_read_input_tokens")),
        cache_write_tokens=count_of(raw.get("cache_creation_input_tokens")),
        cache_write_1h_tokens=count_of(creation.get("ephemeral_1h_input_tokens")) if isinstance(creation, dict) else 0,
        web_searches=count_of(tools.get("web_search_requests")) if isinstance(tools, dict) else 0,
        served_model=model if isinstance(model, str) else "",
        service_tier=tier if isinstance(tier, str) else "",
        reported=True,
    )


def usage_of_answer(doc: dict[str, Any]) -> Usage:
    usage = usage_from(doc.get("usage"), doc.get("model"))
    usage.finish_reasons = finish_reason_of(doc.get("stop_reason"))
    return usage


_GENERATED = re.compile(rb'"(?:text|partial_json|thinking)":"((?:[^"\\]|\\.)*)"')
_DELTA = b"event: content_block_delta"
_SKIPPED = (_DELTA, b"event: ping", b"event: content_block_st")


def read_event(block: bytes, seen: Seen) -> bool:
    if block.startswith(_SKIPPED):
        if seen.count_output and block.startswith(_DELTA):
            seen.output_chars += generated(block, _GENERATED, seen.captured)
        return False  # text and tool deltas carry no usage: not worth parsing
    ev = parse_block(block)
    if ev.event == "message_start":
        doc = orjson.loads(ev.data)
        msg = doc.get("message") if isinstance(doc, dict) else None
        if isinstance(msg, dict):
            seen.usage.merge(usage_from(msg.get("usage"), msg.get("model")))
    elif ev.event == "message_delta":
        doc = orjson.loads(ev.data)
        if isinstance(doc, dict):
            seen.usage.merge(usage_from(doc.get("usage")))
            delta = doc.get("delta")
            if isinstance(delta, dict):
                seen.usage.finish_reasons = finish_reason_of(delta.get("stop_reason")) or seen.usage.finish_reasons
    elif ev.event == "message_stop":
        seen.completed = True
    elif ev.event == "error":
        seen.error = ev.data.decode("utf-8", "replace")
    return False


def _splitter() -> Any:
    return SSEDecoder().feed_blocks


READER: EventReader[bytes] = EventReader(_splitter, read_event, quiet=_SKIPPED)


def rate_limit_headers(
    measure: str, limit: str, remaining: str, reset: str, retry_after: float | None
) -> dict[str, str]:
    return {
        f"anthropic-ratelimit-{measure}-limit": limit,
        f"anthropic-ratelimit-{measure}-remaining": remaining,
        f"anthropic-ratelimit-{measure}-reset": reset.replace("+00:00", "Z"),
    }


def models_list(models: list[str], providers: set[str]) -> dict[str, object]:
    data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models]
    return {
        "data": data,
        "has_more": False,
        "first_id": models[0] if models else None,
        "last_id": models[-1] if models else None,
    }


def count_request(doc: dict[str, Any], model: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k in COUNT_FIELDS}


def input_tokens(doc: dict[str, Any]) -> object:
    return doc.get("input_tokens")


def count_answer(tokens: int) -> dict[str, Any]:
    return {"input_tokens": tokens}
