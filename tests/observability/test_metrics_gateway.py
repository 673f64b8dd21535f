"""`/metrics` of a running gateway after real traffic: the request metrics, the budget gauges read
at scrape time, and the gauges that were there before (their names must not change)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-metrics-000000000000000"


def config(upstream_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream_url, "keys": [{"name": "primary", "value": "sk-ant-x"}]}},
        "virtual_keys": [
            {
                "id": "vk-m",
                "value": KEY,
                "team_id": "team-m",
                "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}],
            }
        ],
        "budgets": [{"id": "team-m-daily", "team_id": "team-m", "max_limit": 10, "reset_duration": "1d"}],
        **extra,
    }


def scrape(base_url: str) -> str:
    with urllib.request.urlopen(base_url + "/metrics", timeout=5) as resp:
        return resp.read().decode()


def value(text: str, prefix: str) -> float:
    """The sum of every sample whose line starts with `prefix` (a name and some labels)."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"no sample {prefix!r} in:\n{text}"
    return total


def traffic(base_url: str) -> None:
    client = anthropic.Anthropic(base_url=base_url, api_key=KEY, max_retries=0)
    for _ in range(3):
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "stream"}]
    ) as stream:
        "".join(stream.text_stream)
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.create(model="claude-opus-4-1", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_metrics_after_traffic(tmp_path: Path) -> None:
    with FakeUpstreamThread() as upstream, GatewayThread(config(upstream.base_url), tmp_path) as gateway:
        traffic(gateway.base_url)
        gateway.request_log()
        text = scrape(gateway.base_url)
    allowed = 'sluice_requests_total{decision="allow",model="claude-haiku-4-5",provider="anthropic",status="200"'
    assert value(text, allowed) == 4
    assert value(text, 'sluice_requests_total{decision="deny"') == 1
    assert value(text, 'sluice_tokens_total{kind="output",model="claude-haiku-4-5"') > 0
    cost = value(text, 'sluice_cost_dollars_total{model="claude-haiku-4-5",provider="anthropic",team="team-m"}')
    assert cost > 0
    labels = '{budget="team-m-daily",scope="team",scope_id="team-m"}'
    assert value(text, "sluice_budget_limit_dollars" + labels) == 10
    assert value(text, "sluice_budget_spent_dollars" + labels) == pytest.approx(cost)
    assert value(text, "sluice_budget_held_dollars" + labels) == 0
    assert value(text, 'sluice_provider_ttfb_seconds_count{model="claude-haiku-4-5",provider="anthropic"}') == 4
    assert value(text, 'sluice_gateway_overhead_seconds_count{surface="anthropic_messages"}') == 4
    assert value(text, 'sluice_request_duration_seconds_count{provider="anthropic"') == 4
    assert value(text, "sluice_request_log_queue_depth") == 0
    # the names that were there before this file grew
    for name in ("sluice_request_log_recorded", "sluice_request_log_written", "sluice_request_log_spilled",
                 "sluice_spend_journalled"):  # fmt: skip
        assert re.search(rf"^{name} ", text, re.M), name
    assert value(text, "sluice_request_log_recorded") == 5


def test_metrics_off_leaves_the_request_series_out(tmp_path: Path) -> None:
    cfg = config("http://127.0.0.1:1", observability={"metrics": {"enabled": False}})
    with GatewayThread(cfg, tmp_path) as gateway:
        text = scrape(gateway.base_url)
    assert "sluice_requests_total" not in text
    assert "sluice_budget_limit_dollars" in text  # scrape-time gauges cost nothing per request
