"""Gemini API wire format (`models/{model}:generateContent`, `:streamGenerateContent?alt=sse`,
`:countTokens`), as Gemini CLI and the google-genai SDK speak it."""

from __future__ import annotations

import re
from typing import Any

import orjson

from sluice.core.types import Completion, Usage, count_of
from sluice.formats.sse import SSEDecoder, encode, generated_chars, generated_pieces, parse_block

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
_FINISH = {"end_turn": "STOP", "stop_sequence": "STOP", "max_tokens": "MAX_TOKENS", "tool_use": "STOP"}


def error_payload(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}}


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps(error_payload(status, message))


def error_event(status: int, message: str) -> bytes:
    return encode(orjson.dumps(error_payload(status, message)))


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


def usage_from_response(body: bytes) -> Usage:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Usage()
    return usage_from(doc.get("usageMetadata"), doc) if isinstance(doc, dict) else Usage()


class StreamObserver:
    """Every chunk of a Gemini stream repeats the cumulative usage; bytes pass unchanged."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.usage = Usage()
        self.error: str | None = None
        self.completed = False
        self.count_output = False
        self.output_chars = 0
        self.captured: list[str] | None = None

    def feed(self, chunk: bytes) -> bytes:
        for block in self._decoder.feed_blocks(chunk):
            if self.count_output:
                self.output_chars += generated_chars(block, _GENERATED)
                if self.captured is not None:
                    self.captured.extend(generated_pieces(block, _GENERATED))
            if b'"usageMetadata"' in block or b'"finishReason"' in block or b'"error"' in block:
                doc = orjson.loads(parse_block(block).data)
                if "error" in doc:
                    self.error = orjson.dumps(doc["error"]).decode()
                    continue
                if doc.get("usageMetadata"):
                    searches = self.usage.web_searches
                    self.usage = usage_from(doc["usageMetadata"], doc)  # cumulative: the latest is the whole
                    self.usage.web_searches += searches  # grounding arrives in one chunk, not repeated
                if any(c.get("finishReason") for c in doc.get("candidates") or ()):
                    self.completed = True
        return chunk


def render_response(c: Completion) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": c.text}] if c.text else []
    for call in c.tool_calls:
        parts.append({"functionCall": {"name": call.name, "args": orjson.loads(call.arguments_json)}})
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": _FINISH.get(c.stop_reason, "STOP"),
                "index": 0,
            }
        ],
        "usageMetadata": _usage(c.usage),
        "modelVersion": c.model,
        "responseId": c.id,
    }


def _usage(u: Usage) -> dict[str, int]:
    prompt = u.input_tokens + u.cache_read_tokens
    out = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": u.output_tokens,
        "totalTokenCount": prompt + u.output_tokens,
    }
    if u.cache_read_tokens:
        out["cachedContentTokenCount"] = u.cache_read_tokens
    return out


def render_stream(c: Completion, *, pieces: int = 4) -> list[bytes]:
    size = max(1, -(-len(c.text) // pieces)) if c.text else 1
    texts = [c.text[i : i + size] for i in range(0, len(c.text), size)] or [""]
    out = []
    for n, text in enumerate(texts):
        last = n == len(texts) - 1
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if last:
            candidate["finishReason"] = _FINISH.get(c.stop_reason, "STOP")
        chunk = {
            "candidates": [candidate],
            "usageMetadata": _usage(c.usage)
            if last
            else {"promptTokenCount": c.usage.input_tokens + c.usage.cache_read_tokens},
            "modelVersion": c.model,
            "responseId": c.id,
        }
        out.append(encode(orjson.dumps(chunk)))
    return out
