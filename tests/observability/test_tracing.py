"""Traces through a running gateway into an OTLP/HTTP receiver: one SERVER span per request with a
CLIENT span per provider attempt, the GenAI attributes, the caller's traceparent followed and a
new one sent upstream naming the attempt's span; sampling; no SDK when tracing is off."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest

from sluice.observability.tracing import parse_traceparent
from tests.fakes.upstream import FakeUpstreamThread
from tests.observability.otlp_sink import OtlpSink
from tests.support import GatewayThread

KEY = "sk-sluice-traces-00000000000000000"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def config(upstream_url: str, sink_url: str, **tracing: Any) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream_url, "keys": [{"name": "primary", "value": "sk-ant-x"}]}},
        "virtual_keys": [
            {
                "id": "vk-t",
                "value": KEY,
                "team_id": "team-t",
                "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}],
            }
        ],
        "routing": {"retries": {"attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02}},
        "observability": {"tracing": {"endpoint": sink_url, "service_name": "sluice-test", **tracing}},
    }


def wait_for(sink: OtlpSink, count: int, gateway: GatewayThread) -> list[dict[str, Any]]:
    tracer = gateway.services.engine.observer.tracer
    assert tracer is not None
    deadline = time.monotonic() + 10
    while len(sink.spans) < count and time.monotonic() < deadline:
        tracer.force_flush()
        time.sleep(0.05)
    return sink.spans


def test_request_and_attempt_spans_follow_the_caller(tmp_path: Path) -> None:
    with OtlpSink() as sink, FakeUpstreamThread() as upstream:
        with GatewayThread(config(upstream.base_url, sink.url), tmp_path) as gateway:
            upstream.upstream.fail_next(529, times=1)  # the first attempt fails, the retry answers
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=5,
                messages=[{"role": "user", "content": "trace me"}],
                extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            )
            spans = wait_for(sink, 3, gateway)
            sent = [r.headers.get("traceparent") for r in upstream.requests]
    assert len(spans) == 3
    server = next(s for s in spans if s["kind"] == 2)  # SPAN_KIND_SERVER
    clients = sorted((s for s in spans if s["kind"] == 3), key=lambda s: s["start"])  # SPAN_KIND_CLIENT
    assert server["trace_id"] == CALLER_TRACE and server["parent_span_id"] == CALLER_SPAN
    assert server["name"] == "chat claude-haiku-4-5"
    attrs = server["attributes"]
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "anthropic" and attrs["gen_ai.system"] == "anthropic"
    assert attrs["gen_ai.request.model"] == "claude-haiku-4-5"
    assert attrs["gen_ai.response.model"]
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["http.response.status_code"] == 200 and attrs["sluice.team"] == "team-t"
    assert server["resource"]["service.name"] == "sluice-test"
    assert [c["parent_span_id"] for c in clients] == [server["span_id"]] * 2
    assert clients[0]["attributes"]["error.type"] == "upstream 529"
    assert clients[1]["attributes"]["http.response.status_code"] == 200
    # why the answer ended (the fake answers end_turn), on the request and the answering attempt
    assert attrs["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert clients[1]["attributes"]["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert "gen_ai.response.finish_reasons" not in clients[0]["attributes"]
    assert all(c["trace_id"] == CALLER_TRACE for c in clients)
    assert server["start"] <= clients[0]["start"] <= clients[0]["end"] <= clients[1]["start"] <= server["end"]
    # each provider call carried its own attempt span as the parent, in the caller's trace
    assert sent == [f"00-{CALLER_TRACE}-{c['span_id']}-01" for c in clients]


def test_unsampled_requests_send_nothing(tmp_path: Path) -> None:
    with OtlpSink() as sink, FakeUpstreamThread() as upstream:
        with GatewayThread(config(upstream.base_url, sink.url, sample_ratio=0.0), tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            for _ in range(3):
                client.messages.create(
                    model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                )
            # a caller's sampled flag wins over the ratio
            client.messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}],
                extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
            )  # fmt: skip
            spans = wait_for(sink, 2, gateway)
            sent = [r.headers.get("traceparent") for r in upstream.requests]
    assert {s["trace_id"] for s in spans} == {CALLER_TRACE}
    assert sent[:3] == [None, None, None]


def test_a_refusal_is_traced_too(tmp_path: Path) -> None:
    with OtlpSink() as sink, GatewayThread(config("http://127.0.0.1:1", sink.url), tmp_path) as gateway:
        client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
        with pytest.raises(anthropic.PermissionDeniedError):
            client.messages.create(model="claude-opus-4-1", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        spans = wait_for(sink, 1, gateway)
    assert spans[0]["status"] == 2  # STATUS_CODE_ERROR
    assert spans[0]["attributes"]["sluice.decision"] == "deny"
    assert spans[0]["attributes"]["http.response.status_code"] == 403


@pytest.mark.parametrize(
    "value",
    [
        f"00-{CALLER_TRACE}-{CALLER_SPAN}-01x",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",
        f"00-{CALLER_TRACE}-{'0' * 16}-01",
        f"01-{CALLER_TRACE}-{CALLER_SPAN}-01",
        f"00-{CALLER_TRACE.upper()}-{CALLER_SPAN}-01",
        "",
        "x" * 10_000,
    ],
)
def test_hostile_traceparents_are_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_no_sdk_import_when_tracing_is_off(tmp_path: Path) -> None:
    code = (
        "import sys; from sluice.app import build_services; from sluice.settings import parse_config;"
        "import sluice.http.server;"
        f"build_services(parse_config({{'store': {{'url': 'sqlite:///{tmp_path}/s.db'}}}}));"
        "print(sorted(m for m in sys.modules"
        " if m.startswith('opentelemetry.sdk') or m == 'sluice.observability.tracing'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]"
