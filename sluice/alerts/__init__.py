"""Alerts: budget thresholds, soft budgets, spend rates and provider health, checked off the
request path (`monitor`), recorded in the audit log as `alert` records and delivered from it by
the audit outbox to each sink (`delivery`, rendered by `sinks`)."""
