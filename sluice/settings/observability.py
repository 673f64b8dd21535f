"""The `observability` section: Prometheus metrics and OpenTelemetry traces."""

from __future__ import annotations

from pydantic import Field

from sluice.settings.base import _Strict


class MetricsConfig(_Strict):
    # The request metrics (counters and histograms of every finished request) on `/metrics`.
    enabled: bool = True
    # A `virtual_key` label on the request, token, cost and refusal metrics: one series per key,
    # so off by default (a team label is always there).
    per_key: bool = False
    # At most this many label sets per metric; later ones are counted under the value `_other`.
    max_series: int = Field(default=10_000, ge=10)


class TracingConfig(_Strict):
    # The OTLP/HTTP traces endpoint (e.g. http://otel-collector:4318/v1/traces). Unset: no
    # tracing at all (the OpenTelemetry SDK is not even imported).
    endpoint: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    service_name: str = "sluice"
    # The share of requests traced when the caller sends no `traceparent`; a caller's sampled
    # flag is followed (parent-based sampling).
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    # Follow the caller's `traceparent` (its trace id and sampled flag); false starts a new trace
    # for every request and records the caller's as a link.
    follow_caller: bool = True


class ObservabilityConfig(_Strict):
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
