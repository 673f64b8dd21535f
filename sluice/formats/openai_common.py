"""What the OpenAI formats share (Chat Completions, Responses, Embeddings): the error body and its
types, the usage object, the model rules for sampling and reasoning, the rate-limit headers and the
models list. A layer under the three format packages, so none of them imports another."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from sluice.core.canonical import Failure
from sluice.core.types import Usage, count_of, finish_reason_of

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
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "invalid_api_key": 401,
    "insufficient_quota": 429,
    "rate_limit_exceeded": 429,
    "server_error": 500,
}
_EPOCH_2025 = 1735689600


def error_payload(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    etype, default_code = ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    if code == "insufficient_quota":  # OpenAI's own shape for an exhausted quota
        etype = code
    return {"error": {"message": message, "type": etype, "param": None, "code": code or default_code}}


def error_body(status: int, message: str, code: str | None = None, request_id: str = "") -> bytes:
    return orjson.dumps(error_payload(status, message, code))


def failure_from(error: dict[str, Any], status: int | None = None) -> Failure:
    etype = str(error.get("type") or error.get("code") or "")
    if status is None:
        status = _ERROR_STATUS.get(str(error.get("code") or ""), _ERROR_STATUS.get(etype, 500))
    return Failure(status, str(error.get("message", "")), etype)


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


def usage_of_answer(doc: dict[str, Any]) -> Usage:
    """A Chat Completions (or Embeddings) answer's usage, with its choices' finish reasons."""
    usage = usage_from(doc.get("usage"), doc)
    usage.finish_reasons = choice_finish_reasons(doc)
    return usage


def choice_finish_reasons(doc: dict[str, Any]) -> tuple[str, ...]:
    """Each choice's `finish_reason` ("stop", "length", "tool_calls", "content_filter"), when set."""
    choices = doc.get("choices")
    found: tuple[str, ...] = ()
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            found += finish_reason_of(choice.get("finish_reason"))
    return found


def rate_limit_headers(
    measure: str, limit: str, remaining: str, reset: str, retry_after: float | None
) -> dict[str, str]:
    return {
        f"x-ratelimit-limit-{measure}": limit,
        f"x-ratelimit-remaining-{measure}": remaining,
        f"x-ratelimit-reset-{measure}": f"{math.ceil(retry_after or 0)}s",
    }


def models_list(models: list[str], providers: set[str]) -> dict[str, object]:
    owner = ",".join(sorted(providers))
    data = [
        {"id": m, "object": "model", "created": _EPOCH_2025, "owned_by": m.split("/", 1)[0] if "/" in m else owner}
        for m in models
    ]
    return {"object": "list", "data": data}


def count_answer(tokens: int) -> dict[str, Any]:
    return {"input_tokens": tokens}


def input_tokens(doc: dict[str, Any]) -> object:
    return doc.get("input_tokens")


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
