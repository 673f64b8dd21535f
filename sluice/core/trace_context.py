"""The W3C `traceparent` the upstream client sends with the provider call running now.

Set by the tracer around one provider call (a context variable, so concurrent requests never
see each other's); unset, and so free, when tracing is off."""

from __future__ import annotations

from contextvars import ContextVar

OUTBOUND_TRACEPARENT: ContextVar[str | None] = ContextVar("sluice_outbound_traceparent", default=None)
