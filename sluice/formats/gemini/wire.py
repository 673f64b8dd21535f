"""Gemini API wire format (`models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
`:countTokens`), as Gemini CLI and the google-genai SDK speak it: its error bodies, usage, what
its stream events mean for metering, and token counting."""

from __future__ import annotations

import re
from typing import Any

import orjson

from sluice.core.types import Usage, count_of, finish_reason_of
from sluice.formats.record import EventReader, Seen
from sluice.formats.sse import SSEDecoder, generated, parse_block

# HTTP status -> google.rpc status name, as Google APIs put it in their error bodies.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GENERATED = re.compile(rb'"text":"((?:[^"\\]|\\.)*)"')


def error_payload(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}}


def error_body(status: int, message: str, code: str | None = None, request_id: str = "") -> bytes:
    return orjson.dumps(error_payload(status, message))


def error_event(status: int, message: str, code: str | None = None) -> bytes:
    """A stream's error is Google's error body on its own, not an SSE `data:` line: that is what
    the Gen AI SDK (and so Gemini CLI) reads as an error mid-stream (`processStreamResponse`
    parses each chunk as JSON and throws its `error`); a `data:` line would be taken for an empty
    answer and the CLI would end as if the model had finished."""
    return orjson.dumps(error_payload(status, message)) + b"\n\n"


def usage_from(raw: dict[str, Any] | None, doc: dict[str, Any] | None = None) -> Usage:
    """promptTokenCount includes cached tokens; thoughts are billed as output. `doc` is the answer
    (or chunk) around it: `modelVersion` names the model that served it, and each grounding web
    search query in `groundingMetadata` is billed per call
    (https://ai.google.dev/gemini-api/docs/pricing, "Grounding with Google Search")."""
    doc = doc or {}
    model = doc.get("modelVersion")
    searches = 0
    candidates = doc.get("candidates")
    for candidate in candidates if isinstance(candidates, list) else ():
        grounding = candidate.get("groundingMetadata") if isinstance(candidate, dict) else None
        if isinstance(grounding, dict):
            queries = grounding.get("webSearchQueries")
            searches += max(1, len(queries)) if isinstance(queries, list) else 1
    if not isinstance(raw, dict):
        return Usage(served_model=model if isinstance(model, str) else "", web_searches=searches)
    prompt = count_of(raw.get("promptTokenCount"))
    cached = min(prompt, count_of(raw.get("cachedContentTokenCount")))
    return Usage(
        input_tokens=prompt - cached,
        output_tokens=count_of(raw.get("candidatesTokenCount")) + count_of(raw.get("thoughtsTokenCount")),
        cache_read_tokens=cached,
        web_searches=searches,
        served_model=model if isinstance(model, str) else "",
        reported=True,
    )


def usage_of_answer(doc: dict[str, Any]) -> Usage:
    usage = usage_from(doc.get("usageMetadata"), doc)
    usage.finish_reasons = finish_reasons(doc)
    return usage


def finish_reasons(doc: dict[str, Any]) -> tuple[str, ...]:
    """Each candidate's `finishReason` ("STOP", "MAX_TOKENS", "SAFETY"...), when it has one."""
    candidates = doc.get("candidates")
    found: tuple[str, ...] = ()
    for candidate in candidates if isinstance(candidates, list) else ():
        if isinstance(candidate, dict):
            found += finish_reason_of(candidate.get("finishReason"))
    return found


def read_event(block: bytes, seen: Seen) -> bool:
    """Every chunk of a Gemini stream repeats the cumulative usage."""
    if seen.count_output:
        seen.output_chars += generated(block, _GENERATED, seen.captured)
        if b'"functionCall"' in block:
            _count_calls(block, seen)
    if b'"usageMetadata"' in block or b'"finishReason"' in block or b'"error"' in block:
        # An error mid-stream may come as Google's bare error body rather than a `data:` line.
        bare = block.lstrip()[:1] == b"{"
        doc = orjson.loads(block if bare else parse_block(block).data)
        if not isinstance(doc, dict):
            return False
        if "error" in doc:
            seen.error = orjson.dumps(doc["error"]).decode()
            return False
        if doc.get("usageMetadata"):
            searches, reasons = seen.usage.web_searches, seen.usage.finish_reasons
            seen.usage = usage_from(doc["usageMetadata"], doc)  # cumulative: the latest is the whole
            seen.usage.web_searches += searches  # grounding arrives in one chunk, not repeated
            seen.usage.finish_reasons = reasons
        reasons = finish_reasons(doc)
        if reasons:
            seen.usage.finish_reasons = reasons
            seen.completed = True
    return False


def _count_calls(block: bytes, seen: Seen) -> None:
    """Function-call arguments arrive as a JSON object (`args`), not as text: they count as the
    generated JSON they are, as the other formats' argument deltas do."""
    doc = orjson.loads(parse_block(block).data)
    for candidate in doc.get("candidates") or () if isinstance(doc, dict) else ():
        content = candidate.get("content") if isinstance(candidate, dict) else None
        for part in content.get("parts") or () if isinstance(content, dict) else ():
            call = part.get("functionCall") if isinstance(part, dict) else None
            if isinstance(call, dict) and call.get("args") is not None:
                args = orjson.dumps(call["args"]).decode()
                seen.output_chars += len(args)
                if seen.captured is not None:
                    seen.captured.append(args)


def _splitter() -> Any:
    return SSEDecoder().feed_blocks


READER: EventReader[bytes] = EventReader(_splitter, read_event)


def count_request(doc: dict[str, Any], model: str) -> dict[str, Any]:
    return {"generateContentRequest": {**doc, "model": f"models/{model}"}}


def total_tokens(doc: dict[str, Any]) -> object:
    return doc.get("totalTokens")


def count_answer(tokens: int) -> dict[str, Any]:
    return {"totalTokens": tokens}


def count_inner(doc: dict[str, Any]) -> dict[str, Any]:
    """The generation request inside a countTokens body, when it wraps one."""
    inner = doc.get("generateContentRequest", doc.get("generate_content_request"))
    if inner is None:
        return doc
    return inner if isinstance(inner, dict) else {}
