"""Metrics and traces of the request path.

`metrics.RequestMetrics` folds each finished request's log entry into plain dictionaries (the
only per-request cost) and shows them to Prometheus at scrape time; `observer.Observer` is the
engine's one seam into observability (the timing of each provider call, the trace of each
request, the metrics of each finished one); `tracing` builds OpenTelemetry spans, and is imported
only when tracing is configured.
"""
