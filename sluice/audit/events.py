"""What the audit log says about one inference request."""

from __future__ import annotations

from typing import Any

from sluice.audit.redact import redact
from sluice.core.context import RequestContext


def request_kind(ctx: RequestContext) -> str:
    if ctx.status == 401:
        return "auth_failure"
    if ctx.decision == "deny":
        return "denied"
    return "request"


def request_summary(ctx: RequestContext, limit: int = 65_536) -> dict[str, Any]:
    """Who, which key, which model, what policy decided (with the budget state it saw), tokens,
    cost and latency. Never a secret: keys appear by id, provider keys by name."""
    u = ctx.usage
    budget = ctx.admission.headers if ctx.admission is not None else {}
    return {
        "request_id": ctx.request_id,
        "path": ctx.path,
        "virtual_key": ctx.virtual_key_id,
        "team": ctx.team_id,
        "customer": ctx.customer_id,
        "client": ctx.client[:300],
        "session": ctx.session_id,
        "user": ctx.user_id,
        "requested_model": ctx.requested_model,
        "route": ctx.route,
        "model": ctx.model,
        "provider": ctx.provider,
        "provider_key": ctx.provider_key_name,
        "status": ctx.status,
        "decision": ctx.decision,
        "reason": ctx.reason,
        "error_kind": ctx.error_kind,
        "budget": {k: v for k, v in budget.items() if k.startswith(("x-sluice-budget", "x-ratelimit"))},
        "tokens": {
            "input": u.input_tokens,
            "output": u.output_tokens,
            "cache_read": u.cache_read_tokens,
            "cache_write": u.cache_write_tokens,
        },
        "cost_pico": ctx.cost_pico,
        "latency_us": int(ctx.elapsed() * 1_000_000),
        "attempts": [{k: v for k, v in a.items() if v is not None} for a in ctx.attempts],
        **(content(ctx, limit) if ctx.capture else {}),
    }


def content(ctx: RequestContext, limit: int) -> dict[str, Any]:
    """The prompt and the answer, with known secret shapes redacted, each cut at `limit` bytes."""

    def clip(text: str) -> str:
        data = text.encode()
        return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore") + "…[truncated]"

    prompt = (ctx.captured_request or b"").decode("utf-8", "replace")
    if ctx.captured_stream is not None:
        answer = "".join(ctx.captured_stream)
    else:
        answer = (ctx.captured_response or b"").decode("utf-8", "replace")
    # Sealed by digest (audit/chain.py): retention and erasure can tombstone it, the record still verifies.
    return {"content": {"request": redact(clip(prompt)), "response": redact(clip(answer))}, "content_sealing": "sha256"}
