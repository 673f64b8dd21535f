"""OpenAI Chat Completions and Embeddings wire format
(https://platform.openai.com/docs/api-reference/chat)."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from sluice.core.types import Completion, Usage, count_of
from sluice.formats.sse import SSEDecoder, encode, generated_chars, generated_pieces, parse_block

ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_denied", "model_not_allowed"),
    404: ("invalid_request_error", "not_found"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
DONE = b"data: [DONE]\n\n"
_GENERATED = re.compile(rb'"(?:content|arguments|reasoning_content)":"((?:[^"\\]|\\.)*)"')


def error_payload(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    etype, default_code = ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    if code == "insufficient_quota":  # OpenAI's own shape for an exhausted quota
        etype = code
    return {"error": {"message": message, "type": etype, "param": None, "code": code or default_code}}


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    return orjson.dumps(error_payload(status, message, code))


def error_event(status: int, message: str, code: str | None = None) -> bytes:
    return encode(orjson.dumps(error_payload(status, message, code)))


def usage_from(raw: dict[str, Any] | None, doc: dict[str, Any] | None = None) -> Usage:
    """OpenAI counts cached prompt tokens inside prompt_tokens; we keep them apart so each is
    priced at its own rate. `doc` is the answer (or chunk) around the usage: its `model` and
    `service_tier` say what actually served the request."""
    doc = doc or {}
    model, tier = doc.get("model"), doc.get("service_tier")
    served = model if isinstance(model, str) else ""
    tier = tier if isinstance(tier, str) else ""
    if not isinstance(raw, dict):
        return Usage(served_model=served, service_tier=tier)
    prompt = count_of(raw.get("prompt_tokens")) or count_of(raw.get("input_tokens"))
    details = raw.get("prompt_tokens_details") or raw.get("input_tokens_details")
    cached = count_of(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return Usage(
        input_tokens=max(0, prompt - cached),
        output_tokens=count_of(raw.get("completion_tokens")) or count_of(raw.get("output_tokens")),
        cache_read_tokens=min(cached, prompt),
        served_model=served,
        service_tier=tier,
        reported=True,
    )


def usage_from_response(body: bytes) -> Usage:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Usage()
    return usage_from(doc.get("usage"), doc) if isinstance(doc, dict) else Usage()


class StreamObserver:
    """Collects usage from a chat completion stream.

    When the gateway asked the upstream for `include_usage` on the caller's behalf
    (`hide_usage_chunk`), the usage-only chunk is taken out again so the caller sees the stream it
    asked for; otherwise bytes pass unchanged.
    """

    def __init__(self, *, hide_usage_chunk: bool = False) -> None:
        self._decoder = SSEDecoder()
        self._hide = hide_usage_chunk
        self.usage = Usage()
        self.error: str | None = None
        self.completed = False
        self.count_output = False  # measure generated text as it streams (for budget checks)
        self.output_chars = 0
        self.captured: list[str] | None = None  # keep the generated text too (audit content capture)

    def feed(self, chunk: bytes) -> bytes:
        blocks = self._decoder.feed_blocks(chunk)
        if not self._hide:
            for block in blocks:
                self._observe(block)
            return chunk
        return b"".join(block + b"\n\n" for block in blocks if not self._observe(block))

    def _observe(self, block: bytes) -> bool:
        """Returns True for a usage-only chunk."""
        if block.endswith(b"[DONE]"):
            self.completed = True
            return False
        if self.count_output and b'"delta"' in block:
            self.output_chars += generated_chars(block, _GENERATED)
            if self.captured is not None:
                self.captured.extend(generated_pieces(block, _GENERATED))
        if b'"usage":{' not in block and b'"usage": {' not in block and b'"error"' not in block:
            return False  # most chunks: "usage":null or none at all
        data = parse_block(block).data
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if "error" in doc:
            self.error = data.decode("utf-8", "replace")
            return False
        usage = doc.get("usage")
        if usage:
            self.usage.merge(usage_from(usage, doc))
            return not doc.get("choices")
        return False


def render_completion(c: Completion) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": c.text or None, "refusal": None}
    if c.tool_calls:
        message["tool_calls"] = [
            {"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments_json}}
            for t in c.tool_calls
        ]
    return {
        "id": c.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": c.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _STOP_REASONS.get(c.stop_reason, "stop"),
            }
        ],
        "usage": render_usage(c.usage),
    }


def render_usage(u: Usage) -> dict[str, Any]:
    prompt = u.input_tokens + u.cache_read_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output_tokens,
        "total_tokens": prompt + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
    }


def render_stream(c: Completion, *, include_usage: bool, pieces: int = 4) -> list[bytes]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None, choices: bool = True) -> bytes:
        doc: dict[str, Any] = {"id": c.id, "object": "chat.completion.chunk", "created": created, "model": c.model}
        doc["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []
        if include_usage:
            doc["usage"] = usage
        return encode(orjson.dumps(doc))

    out = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if c.text:
        size = max(1, -(-len(c.text) // pieces))
        out.extend(chunk({"content": c.text[i : i + size]}) for i in range(0, len(c.text), size))
    for n, t in enumerate(c.tool_calls):
        call = {"index": n, "id": t.id, "type": "function", "function": {"name": t.name, "arguments": ""}}
        out.append(chunk({"tool_calls": [call]}))
        out.append(chunk({"tool_calls": [{"index": n, "function": {"arguments": t.arguments_json}}]}))
    out.append(chunk({}, _STOP_REASONS.get(c.stop_reason, "stop")))
    if include_usage:
        out.append(chunk({}, usage=render_usage(c.usage), choices=False))
    out.append(DONE)
    return out


def render_embeddings(model: str, inputs: list[str], usage: Usage, dims: int = 8) -> dict[str, Any]:
    data = []
    for i, text in enumerate(inputs):
        seed = sum(text.encode()) or 1
        data.append(
            {"object": "embedding", "index": i, "embedding": [((seed * (k + 1)) % 997) / 997.0 for k in range(dims)]}
        )
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }


# OpenAI's reasoning models (the o-series, GPT-5 but its -chat variants) keep the default sampling:
# "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value
# is supported" and "Unsupported parameter: 'top_p' is not supported with this model"
# (https://platform.openai.com/docs/guides/reasoning).
_REASONING_MODEL = re.compile(
    r"(?:^|[/.:])(?:o\d(?:-[a-z]+)?|gpt-5(?:\.\d+)?(?!-chat)(?:-[a-z]+)*)(?:-\d{4}-\d{2}-\d{2})?$"
)


def default_sampling_only(model: str) -> bool:
    return _REASONING_MODEL.search(model) is not None


def sampling_for(model: str, temperature: float | None, top_p: float | None) -> dict[str, float]:
    """temperature and top_p as an OpenAI model takes them (a reasoning model: the defaults only)."""
    out: dict[str, float] = {}
    fixed = default_sampling_only(model)
    if temperature is not None and not (fixed and temperature != 1):
        out["temperature"] = temperature
    if top_p is not None and not (fixed and top_p != 1):
        out["top_p"] = top_p
    return out


# OpenAI's models without reasoning refuse the setting: "Unsupported parameter: 'reasoning.effort' is not
# supported with this model" (gpt-4.1 on Responses; "reasoning_effort is not supported with this model" on
# Chat). Only models known to be such are named here: Chat-compatible vendors' models are left as they are.
_NO_REASONING = re.compile(r"(?:^|[/.:])(?:gpt-4|gpt-3\.5|chatgpt-|gpt-5(?:\.\d+)?-chat)")


def takes_reasoning(model: str) -> bool:
    return _NO_REASONING.search(model) is None
