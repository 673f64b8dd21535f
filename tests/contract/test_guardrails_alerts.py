"""The `alert` action raises an alert through the alert delivery (sluice.alerts' `Alerts.fire`):
once per rule and request, a retried attempt of the same request included, and never with the
matched content (its keyed hash and length only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic

from tests.fakes.upstream import FakeUpstreamThread
from tests.observability.test_alerts import SECRET, HookSink, wait
from tests.support import GatewayThread

KEY = "sk-sluice-guard-alerts-000000000"
TERM = "Project Falcon"


def config(upstream: str, hooks: str) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream, "keys": [{"name": "only", "value": "sk-ant-x"}]}},
        "virtual_keys": [{"id": "vk-galert", "value": KEY, "provider_configs": [{"provider": "anthropic"}]}],
        "routing": {"retries": {"attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.05}},
        "audit": {"hmac_key": "guard-alerts-audit-key-0123456789", "export": {"poll_interval_s": 0.1}},
        "alerts": {
            "interval_s": 3600,
            "sinks": [{"name": "hook", "type": "webhook", "url": hooks + "/hook", "secret": SECRET}],
        },
        "guardrails": {
            "placeholder_key": "alerts-test-key",
            "sets": {
                "standard": {
                    "rules": [
                        {"name": "falcon", "detector": "deny", "terms": [TERM], "action": "alert"},
                        # Checked per attempt: a retried attempt finds it again.
                        {"name": "falcon-to-anthropic", "detector": "deny", "terms": [TERM], "action": "alert",
                         "providers": ["anthropic"]},
                    ]
                }
            },
        },
    }  # fmt: skip


def test_alert_rules_raise_one_alert_each_without_the_content(tmp_path: Path) -> None:
    hooks = HookSink()
    with FakeUpstreamThread() as upstream, GatewayThread(config(upstream.base_url, hooks.url), tmp_path) as gw:
        upstream.upstream.fail_next(500, times=1)  # the first attempt fails, the retry is served
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=KEY, max_retries=0)
        client.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": f"about {TERM} again"}]
        )
        assert len(upstream.requests) == 2  # two attempts of one request

        async def read() -> list[Any]:
            return [r async for r in gw.services.store.audit_records()]

        wait(lambda: len([r for r in gw.call(read()) if r.kind == "alert"]) >= 2)
        records = gw.call(read())
        alerts = [r.data for r in records if r.kind == "alert"]
        assert sorted(a["rule"] for a in alerts) == ["falcon", "falcon-to-anthropic"]  # one each, not per attempt
        [request_id] = {a["request_id"] for a in alerts}
        assert all(a["type"] == "guardrail" and a["length"] == len(TERM) and len(a["hmac"]) == 16 for a in alerts)
        scoped = next(a for a in alerts if a["rule"] == "falcon-to-anthropic")
        assert scoped["matches"] == 2  # found on both attempts, alerted once
        guardrail_events = [r.data for r in records if r.kind == "guardrail"]
        assert {e["action"] for e in guardrail_events} == {"alert"} and all(
            e["request_id"] == request_id for e in guardrail_events
        )
        assert all(TERM.lower() not in json.dumps(r.data).lower() for r in records if r.kind in ("alert", "guardrail"))
        wait(lambda: len(hooks.on("/hook")) >= 2)
        delivered = [json.loads(body) for _, body in hooks.on("/hook")]
        assert len(delivered) == 2 and all(TERM.lower() not in json.dumps(d).lower() for d in delivered)
