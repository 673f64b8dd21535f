"""What is recorded of a finished request: its request log entry, and its audit record (who,
which key, which model, what policy decided with the budget state it saw, tokens, cost,
latency; never a secret: keys appear by id, provider keys by name)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sluice.audit.redact import redact
from sluice.engine.context import RequestContext
from sluice.storage.records import RequestLogEntry

_BUDGET_HEADERS = ("x-sluice-budget", "x-ratelimit")


def entry_of(ctx: RequestContext, mcp_tools: tuple[str, ...] = ()) -> RequestLogEntry:
    u, key, r = ctx.usage, ctx.key, ctx.request
    return RequestLogEntry(
        request_id=r.request_id,
        ts=datetime.fromtimestamp(r.started_unix, UTC),
        path=r.path,
        surface=r.surface.value,
        status=ctx.status,
        decision=ctx.decision,
        reason=ctx.reason,
        error_kind=ctx.error_kind,
        virtual_key_id=key.id if key else None,
        virtual_key_name=key.name if key else None,
        team_id=key.team_id if key else None,
        customer_id=key.customer_id if key else None,
        client=ctx.client[:300],
        session_id=ctx.session_id,
        user_id=ctx.user_id,
        provider=ctx.provider,
        provider_key_name=ctx.provider_key_name,
        requested_model=ctx.requested_model,
        model=ctx.model,
        stream=ctx.stream,
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        cost_pico=ctx.cost_pico,
        latency_ms=round(ctx.elapsed() * 1000, 3),
        ttfb_ms=round(ctx.ttfb * 1000, 3) if ctx.ttfb is not None else None,
        attempts=[a.as_dict() for a in ctx.attempts],
        route=ctx.route,
        mcp_tools=mcp_tools,
        guardrails=ctx.guardrail.count if ctx.guardrail is not None else 0,
        repo=ctx.repo,
        branch=ctx.branch,
        cwd=ctx.cwd,
    )


def request_kind(ctx: RequestContext) -> str:
    if ctx.status == 401:
        return "auth_failure"
    if ctx.decision == "deny":
        return "denied"
    return "request"


def request_summary(ctx: RequestContext, limit: int = 65_536) -> dict[str, Any]:
    u = ctx.usage
    budget = ctx.charge.budget_headers if ctx.charge is not None else {}
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
        "budget": {k: v for k, v in budget.items() if k.startswith(_BUDGET_HEADERS)},
        "tokens": {
            "input": u.input_tokens,
            "output": u.output_tokens,
            "cache_read": u.cache_read_tokens,
            "cache_write": u.cache_write_tokens,
        },
        "cost_pico": ctx.cost_pico,
        "latency_us": int(ctx.elapsed() * 1_000_000),
        "attempts": [{k: v for k, v in a.as_dict().items() if v is not None} for a in ctx.attempts],
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
