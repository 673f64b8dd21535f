"""The `observability` section: Prometheus metrics and OpenTelemetry traces."""

from __future__ import annotations

from pydantic import Field, model_validator

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


class AgentTelemetryConfig(_Strict):
    """What the gateway does with the OpenTelemetry signed-in agents send it (`/v1/metrics`,
    `/v1/logs`, `/v1/traces`, auth.gateway_signin): it always stores their metric points per
    person; with `forward`, it also sends every export on to a collector, with the person's
    identity added as resource attributes (sluice.observability.agent_forward)."""

    forward: bool = False
    # The collector's OTLP/HTTP base (http://otel-collector:4318): exports go to
    # {endpoint}/v1/{signal}. Unset: `tracing.endpoint` without its `/v1/traces`.
    endpoint: str | None = Field(default=None, pattern=r"^https?://[^?#]+$")
    headers: dict[str, str] = Field(default_factory=dict)  # e.g. the collector's own credential
    # Exports waiting to be sent; past this, new ones are dropped (counted), never waited for.
    queue_size: int = Field(default=1000, ge=1, le=100_000)
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class ObservabilityConfig(_Strict):
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)
    agent_telemetry: AgentTelemetryConfig = Field(default_factory=AgentTelemetryConfig)

    @model_validator(mode="after")
    def _forward_needs_a_collector(self) -> ObservabilityConfig:
        agents = self.agent_telemetry
        if agents.forward and agents.endpoint is None and self.tracing.endpoint is None:
            raise ValueError(
                "observability.agent_telemetry.forward needs a collector: set agent_telemetry.endpoint "
                "(or tracing.endpoint)"
            )
        return self

    def agent_collector(self) -> str | None:
        """The collector base agent exports are forwarded to, None when they are not."""
        agents = self.agent_telemetry
        if not agents.forward:
            return None
        if agents.endpoint is not None:
            return agents.endpoint.rstrip("/")
        assert self.tracing.endpoint is not None
        return self.tracing.endpoint.rstrip("/").removesuffix("/v1/traces")
