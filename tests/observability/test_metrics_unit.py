"""The request metrics folded from request log entries: what each series counts, the gateway's
and the provider's shares of the time, and the cap on label sets."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest

from sluice.core.context import Attempt
from sluice.observability.metrics import McpMetrics, RequestMetrics
from sluice.storage.records import RequestLogEntry


def entry(**kw: object) -> RequestLogEntry:
    base: dict[str, object] = {
        "request_id": "req_1",
        "ts": datetime.now(UTC),
        "path": "/v1/messages",
        "surface": "anthropic_messages",
        "status": 200,
        "decision": "allow",
        "provider": "anthropic",
        "model": "claude-haiku-4-5",
        "team_id": "team-a",
        "virtual_key_id": "vk-a",
        "input_tokens": 10,
        "output_tokens": 5,
        "cache_read_tokens": 3,
        "cost_pico": 2_500_000_000,  # $0.0025
        "latency_ms": 400.0,
        "ttfb_ms": 400.0,
    }
    base.update(kw)
    return RequestLogEntry(**base)  # type: ignore[arg-type]


def exposition(*collectors: object) -> str:
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)  # type: ignore[arg-type]
    return generate_latest(registry).decode()


def test_requests_tokens_cost_and_refusals() -> None:
    m = RequestMetrics()
    m.observe(entry())
    m.observe(entry())
    m.observe(entry(status=402, decision="deny", error_kind="POLICY_BUDGET_EXCEEDED", input_tokens=0,
                    output_tokens=0, cache_read_tokens=0, cost_pico=0))  # fmt: skip
    text = exposition(m)
    assert (
        'sluice_requests_total{decision="allow",model="claude-haiku-4-5",provider="anthropic",status="200",'
        'surface="anthropic_messages",team="team-a"} 2.0' in text
    )
    assert 'status="402"' in text
    assert 'sluice_tokens_total{kind="input",model="claude-haiku-4-5",provider="anthropic",team="team-a"} 20.0' in text
    assert 'kind="cache_read"' in text and 'kind="cache_write"' in text
    assert 'sluice_cost_dollars_total{model="claude-haiku-4-5",provider="anthropic",team="team-a"} 0.005' in text
    assert 'sluice_limit_refusals_total{kind="POLICY_BUDGET_EXCEEDED",team="team-a"} 1.0' in text
    assert "virtual_key" not in text  # per key only when configured
    assert 'sluice_request_duration_seconds_count{provider="anthropic",surface="anthropic_messages"} 3.0' in text


def test_per_key_label_when_configured() -> None:
    m = RequestMetrics(per_key=True)
    m.observe(entry())
    assert 'virtual_key="vk-a"' in exposition(m)


def test_provider_wait_and_gateway_overhead() -> None:
    m = RequestMetrics()
    started = 100.0
    first = Attempt("claude-haiku-4-5", "anthropic", outcome="upstream 529", status=529, sent=100.010, waited=0.2)
    second = Attempt("claude-haiku-4-5", "anthropic", outcome="ok", status=200, sent=100.300, waited=0.05)
    # a stream: the provider's wait for the answering attempt runs to the first byte (0.5 s in)
    m.observe(entry(stream=True, ttfb_ms=500.0, latency_ms=2000.0), [first, second], started)
    text = exposition(m)
    assert 'sluice_provider_ttfb_seconds_count{model="claude-haiku-4-5",provider="anthropic"} 2.0' in text
    # waits: 0.2 (the failed attempt) + 0.2 (0.5 - 0.3, the stream's) = 0.4; overhead 0.5 - 0.4
    overhead = [line for line in text.splitlines() if line.startswith("sluice_gateway_overhead_seconds_sum")]
    assert abs(float(overhead[0].split()[-1]) - 0.1) < 1e-9
    assert 'sluice_upstream_errors_total{kind="http_529",provider="anthropic"} 1.0' in text
    assert 'sluice_retries_total{model="claude-haiku-4-5",provider="anthropic"} 1.0' in text


def test_fallbacks_counted_apart_from_retries() -> None:
    m = RequestMetrics()
    a = Attempt("claude-sonnet-4-6", "anthropic", outcome="PROVIDER_TIMEOUT", sent=0.1, waited=30.0)
    b = Attempt("gpt-4o-mini", "openai", outcome="ok", sent=30.2, waited=0.5)
    m.observe(entry(), [a, b], 0.0)
    text = exposition(m)
    assert 'sluice_fallbacks_total{model="gpt-4o-mini",provider="openai"} 1.0' in text
    assert 'sluice_upstream_errors_total{kind="PROVIDER_TIMEOUT",provider="anthropic"} 1.0' in text
    assert "sluice_retries_total{" not in text


def test_label_sets_are_capped() -> None:
    m = RequestMetrics(max_series=10)
    for i in range(50):  # a caller inventing model names behind a permissive allowlist
        m.observe(entry(model=f"m-{i}"))
    assert len(m.requests) == 11  # ten, then everything else under _other
    assert m.requests[("_other",) * 6] == 40
    assert len(m.usage) <= 11 and len(m.duration.series) <= 11


def test_mcp_calls_denials_and_latency() -> None:
    m = McpMetrics()
    m.observe("mcp_call", {"server": "git", "tool": "status", "outcome": "ok", "duration_us": 12_000})
    m.observe("mcp_denied", {"server": "git", "tool": "push", "outcome": "denied"})
    text = exposition(m)
    assert 'sluice_mcp_calls_total{outcome="ok",server="git",tool="status"} 1.0' in text
    assert 'sluice_mcp_denials_total{outcome="denied",server="git",tool="push"} 1.0' in text
    assert 'sluice_mcp_call_duration_seconds_bucket{le="0.025",server="git",tool="status"} 1.0' in text


async def test_streams_in_flight_from_send_to_finish() -> None:
    from sluice.core.context import RequestRecord
    from sluice.core.types import Operation, WireFormat
    from sluice.observability.observer import Observer
    from sluice.providers.base import ProviderCall, ProviderReply

    class Ctx:
        def __init__(self) -> None:
            self.request = RequestRecord("req_s", WireFormat.OPENAI_CHAT, Operation.GENERATE, "/v1/chat/completions")
            self.attempts: list[Attempt] = []

    class Provider:
        async def send(self, call: ProviderCall) -> ProviderReply:
            return ProviderReply(200, "text/event-stream", {}, chunks=None, body=b"")

    observer = Observer(RequestMetrics())
    ctx, attempt = Ctx(), Attempt("gpt-4o-mini", "openai")
    call = ProviderCall(WireFormat.OPENAI_CHAT, Operation.GENERATE, "gpt-4o-mini", b"{}", {}, {}, "", True, None)
    await observer.send(ctx, Provider(), call, attempt)  # type: ignore[arg-type]
    assert 'sluice_streams_in_flight{surface="openai_chat"} 1.0' in exposition(observer.streams)
    assert attempt.sent is not None and attempt.waited is not None and attempt.waited >= 0
    observer.finished(ctx, entry(request_id="req_s", stream=True))  # type: ignore[arg-type]
    assert "sluice_streams_in_flight{" not in exposition(observer.streams)


def test_the_example_config_loads(monkeypatch: object) -> None:
    from pathlib import Path

    import pytest

    from sluice.settings import load_config

    mp = pytest.MonkeyPatch()
    mp.setenv("AUDIT_HMAC_KEY", "example-audit-key-0123456789abcdef")
    mp.setenv("ALERT_WEBHOOK_SECRET", "whsec_ZXhhbXBsZQ==")
    try:
        cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "observability.yaml")
    finally:
        mp.undo()
    assert cfg.alerts.enabled and cfg.observability.tracing.endpoint


def test_a_refusal_before_any_provider_is_not_an_upstream_error() -> None:
    m = RequestMetrics()
    refused = Attempt("claude-haiku-4-5", outcome="POLICY_BUDGET_EXCEEDED")  # never sent
    m.observe(entry(status=402, decision="deny", error_kind="POLICY_BUDGET_EXCEEDED"), [refused], 0.0)
    assert m.upstream_errors == {}
    assert m.refusals == {("POLICY_BUDGET_EXCEEDED", "team-a"): 1}
