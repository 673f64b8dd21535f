"""Writes sluice-dashboard.json, the Grafana dashboard over Sluice's metrics
(docs/observability.md). Run `python deploy/grafana/build_dashboard.py` after changing a panel;
tests/observability/test_prometheus.py checks the file is this script's output and runs every
panel's query against a real Prometheus scraping a gateway."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
TEAM = 'team=~"$team"'
PROVIDER = 'provider=~"$provider"'


def panel(title: str, exprs: list[tuple[str, str]], *, kind: str = "timeseries", unit: str = "short",
          w: int = 12, h: int = 8, description: str = "") -> dict[str, Any]:  # fmt: skip
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]}}
        if kind == "timeseries"
        else {},
        "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": f} for i, (e, f) in enumerate(exprs)],
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"w": 24, "h": 1}, "panels": []}


def quantiles(metric: str, by: str, where: str = "") -> list[tuple[str, str]]:
    sel = f"{{{where}}}" if where else ""
    return [
        (f"histogram_quantile({q}, sum by (le{by}) (rate({metric}_bucket{sel}[$__rate_interval])))",
         f"p{int(q * 100)}{' {{' + by.strip(', ') + '}}' if by else ''}")  # fmt: skip
        for q in (0.5, 0.95, 0.99)
    ]


PANELS = [
    row("Traffic"),
    panel("Requests per second by status", [
        (f'sum by (status) (rate(sluice_requests_total{{{TEAM},{PROVIDER}}}[$__rate_interval]))', "{{status}}")],
        unit="reqps"),  # fmt: skip
    panel("Requests by decision", [
        (f'sum by (decision) (rate(sluice_requests_total{{{TEAM}}}[$__rate_interval]))', "{{decision}}")],
        unit="reqps"),  # fmt: skip
    panel("Requests by model", [
        (f'sum by (provider, model) (rate(sluice_requests_total{{{TEAM},{PROVIDER}}}[$__rate_interval]))',
         "{{provider}} {{model}}")], unit="reqps"),  # fmt: skip
    panel("Streams in flight", [("sum by (surface) (sluice_streams_in_flight)", "{{surface}}")]),
    row("Spend"),
    panel("Cost per hour by team", [
        (f'sum by (team) (rate(sluice_cost_dollars_total{{{TEAM}}}[$__rate_interval])) * 3600', "{{team}}")],
        unit="currencyUSD"),  # fmt: skip
    panel("Tokens per second by kind", [
        (f'sum by (kind) (rate(sluice_tokens_total{{{TEAM},{PROVIDER}}}[$__rate_interval]))', "{{kind}}")]),
    panel("Budget utilisation", [
        ("max by (budget, scope, scope_id) (sluice_budget_utilisation_ratio)", "{{budget}}")],
        kind="bargauge", unit="percentunit", description="Settled spend over the limit in the current window."),
    panel("Budgets: spent, held, limit", [
        ("max by (budget) (sluice_budget_spent_dollars)", "{{budget}} spent"),
        ("max by (budget) (sluice_budget_held_dollars)", "{{budget}} held"),
        ("max by (budget) (sluice_budget_limit_dollars)", "{{budget}} limit")], unit="currencyUSD"),
    panel("Limit refusals", [
        (f'sum by (kind) (rate(sluice_limit_refusals_total{{{TEAM}}}[$__rate_interval]))', "{{kind}}")],
        unit="reqps"),  # fmt: skip
    row("Latency"),
    panel("Whole request", quantiles("sluice_request_duration_seconds", "", PROVIDER), unit="s"),
    panel("Provider time to first byte", quantiles("sluice_provider_ttfb_seconds", ", provider", PROVIDER),
          unit="s"),  # fmt: skip
    panel("Gateway overhead", quantiles("sluice_gateway_overhead_seconds", ""), unit="s",
          description="The gateway's own share of the time to first byte."),  # fmt: skip
    row("Providers"),
    panel("Upstream errors by kind", [
        (f'sum by (provider, kind) (rate(sluice_upstream_errors_total{{{PROVIDER}}}[$__rate_interval]))',
         "{{provider}} {{kind}}")], unit="reqps"),  # fmt: skip
    panel("Retries and fallbacks", [
        (f'sum by (provider) (rate(sluice_retries_total{{{PROVIDER}}}[$__rate_interval]))', "retries {{provider}}"),
        ('sum by (model) (rate(sluice_fallbacks_total[$__rate_interval]))', "fallbacks to {{model}}")],
        unit="reqps"),  # fmt: skip
    panel("Circuit breakers open", [('max by (breaker) (sluice_circuit_breaker_state{state="open"})', "{{breaker}}")],
          kind="stat"),  # fmt: skip
    panel("Upstream connections", [
        ("sum by (provider) (sluice_upstream_connections_in_use)", "in use {{provider}}"),
        ("sum by (provider) (sluice_upstream_connections_waiting)", "waiting {{provider}}")]),
    row("MCP"),
    panel("MCP calls", [
        ("sum by (server, tool) (rate(sluice_mcp_calls_total[$__rate_interval]))", "{{server}} {{tool}}")],
        unit="reqps"),  # fmt: skip
    panel("MCP denials", [
        ("sum by (server, tool, outcome) (rate(sluice_mcp_denials_total[$__rate_interval]))",
         "{{server}} {{tool}} {{outcome}}")], unit="reqps"),  # fmt: skip
    panel("MCP call latency", quantiles("sluice_mcp_call_duration_seconds", ", server"), unit="s"),
    row("Durability"),
    panel("Request log", [
        ("sum(sluice_request_log_queue_depth)", "queue depth"),
        ("sum(sluice_request_log_spilled)", "spilled since start"),
        ("sum(sluice_spend_journalled)", "spend journalled")]),
    panel("Audit log", [
        ("max(sluice_audit_chain_head)", "chain head"),
        ("sum by (exporter) (sluice_audit_export_backlog)", "backlog {{exporter}}")]),
]


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    x = y = 0
    row_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            x, y = 0, y + row_h
            row_h = 0
        p["gridPos"].update(x=x, y=y)
        x, row_h = x + w, max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + 1, 0
    return panels


def variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name, "label": name.capitalize(), "type": "query", "datasource": DS,
        "query": {"query": query, "refId": name}, "definition": query, "refresh": 2,
        "includeAll": True, "multi": True, "allValue": ".*", "current": {"text": "All", "value": "$__all"},
    }  # fmt: skip


def dashboard() -> dict[str, Any]:
    return {
        "uid": "sluice-overview",
        "title": "Sluice gateway",
        "description": "Traffic, spend, budgets, latency, providers, MCP and durability of a Sluice gateway.",
        "tags": ["sluice", "llm", "gateway"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus"},
                variable("team", "label_values(sluice_requests_total, team)"),
                variable("provider", "label_values(sluice_requests_total, provider)"),
            ]
        },
        "panels": layout(PANELS),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    (Path(__file__).parent / "sluice-dashboard.json").write_text(render())
