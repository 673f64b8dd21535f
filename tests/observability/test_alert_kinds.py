"""Spend-rate and provider-health alerts, an alert that waits in the outbox while its sink (a
webhook, a mail server) is down and is delivered once after a restart, and one claimed while the
audit log was unreachable."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import anthropic
import pytest
from aiosmtpd.controller import Controller

from tests.fakes.upstream import FakeUpstreamThread
from tests.observability.test_alerts import SECRET, HookSink, MailSink, wait
from tests.support import GatewayThread

KEY = "sk-sluice-alertkinds-000000000000"


def config(upstream: str, hooks: str) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream, "keys": [{"name": "primary", "value": "sk-ant-x"}]}},
        "virtual_keys": [
            {
                "id": "vk-runaway",
                "value": KEY,
                "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}],
            }
        ],
        "routing": {"retries": {"attempts": 1}, "circuit_breaker": {"failure_threshold": 2, "open_seconds": 60}},
        "audit": {"hmac_key": "alert-kinds-audit-key-0123456789ab", "export": {"poll_interval_s": 0.1}},
        "alerts": {
            "interval_s": 3600,  # the test runs the checks itself
            "spend_rate": [{"id": "runaway", "virtual_key_id": "vk-runaway", "max_dollars_per_hour": 0.000001}],
            "sinks": [{"name": "hook", "type": "webhook", "url": hooks + "/hook", "secret": SECRET}],
        },
    }


class FlakySink(HookSink):
    """Answers 503 while `down`, without keeping what it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        handler = self.server.RequestHandlerClass
        sink = self
        original = handler.do_POST  # type: ignore[attr-defined]

        def do_post(req: Any) -> None:
            if sink.down:
                req.rfile.read(int(req.headers.get("content-length", 0)))
                req.send_response(503)
                req.send_header("content-length", "0")
                req.end_headers()
                return
            original(req)

        handler.do_POST = do_post  # type: ignore[attr-defined]


def test_spend_rate_and_breaker_alerts_wait_out_a_sink_outage(tmp_path: Path) -> None:
    sink = FlakySink()
    with FakeUpstreamThread() as upstream:
        cfg = config(upstream.base_url, sink.url)
        with GatewayThread(cfg, tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "$"}])
            upstream.upstream.fail_next(500, times=2)
            for _ in range(2):
                with pytest.raises(anthropic.InternalServerError):
                    client.messages.create(
                        model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                    )
            gateway.request_log()
            monitor = gateway.services.alerts.monitor  # type: ignore[union-attr]
            fired = gateway.call(monitor.check())
            assert sorted(a["type"] for a in fired) == ["provider_unhealthy", "spend_rate"]
            assert gateway.call(monitor.check()) == []  # the same hour, the same opening: nothing new
            time.sleep(0.5)  # the runner tries (503) and backs off
        assert sink.received == []
        sink.down = False
        with GatewayThread(cfg, tmp_path) as gateway:
            wait(lambda: len(sink.received) >= 2)
            time.sleep(0.5)
            assert gateway.call(gateway.services.alerts.monitor.check()) == []  # type: ignore[union-attr]
    bodies = [json.loads(body)["data"] for _, _, body in sink.received]
    assert sorted(b["type"] for b in bodies) == ["provider_unhealthy", "spend_rate"]
    rate = next(b for b in bodies if b["type"] == "spend_rate")
    assert rate["scope_id"] == "vk-runaway" and int(rate["requests"]) >= 1
    health = next(b for b in bodies if b["type"] == "provider_unhealthy")
    assert health["provider"] == "anthropic" and health["provider_key"] == "primary"
    assert len({h["webhook-id"] for _, h, _ in sink.received}) == 2


def test_an_alert_claimed_while_the_audit_log_is_down_is_recorded_later(tmp_path: Path) -> None:
    with (
        FakeUpstreamThread() as upstream,
        GatewayThread(config(upstream.base_url, "http://127.0.0.1:1"), tmp_path) as gw,
    ):
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=KEY, max_retries=0)
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "$"}])
        gw.request_log()
        monitor = gw.services.alerts.monitor  # type: ignore[union-attr]
        audit = monitor._audit
        real = audit.append

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise OSError("audit store unreachable")

        audit.append = broken  # type: ignore[method-assign]
        assert gw.call(monitor.check()) == []  # claimed, not recorded
        audit.append = real  # type: ignore[method-assign]
        fired = gw.call(monitor.check())
        assert [a["type"] for a in fired] == ["spend_rate"]

        async def alerts() -> list[Any]:
            return [r async for r in gw.services.store.audit_records() if r.kind == "alert"]

        assert len(gw.call(alerts())) == 1


def test_the_developer_of_a_key_is_mailed_too(tmp_path: Path) -> None:
    import dataclasses

    from sluice.alerts import sinks
    from sluice.settings import AlertSinkConfig
    from sluice.storage.records import ConfigObject

    with GatewayThread(config("http://127.0.0.1:1", "http://127.0.0.1:1"), tmp_path) as gw:
        store = gw.services.store

        async def setup() -> None:
            key = await store.key_by_id("vk-runaway")
            assert key is not None
            await store.update_key(dataclasses.replace(key, user_id="u-dana"))
            emails = [{"value": "old@example.com"}, {"value": "dana@example.com", "primary": True}]
            body = {"userName": "dana", "active": True, "emails": emails}
            await store.put_object(ConfigObject("user", "u-dana", body, "test"), "test")

        gw.call(setup())
        about_key = {"scope": "virtual_key", "scope_id": "vk-runaway"}
        assert gw.call(sinks.developer_email(store, about_key)) == "dana@example.com"
        assert gw.call(sinks.developer_email(store, {"scope": "team", "scope_id": "t"})) is None
        assert gw.call(sinks.developer_email(store, {"scope": "virtual_key", "scope_id": "vk-nobody"})) is None
    sink = AlertSinkConfig(name="m", type="email", smtp_host="h", sender="s@example.com", to=["ops@example.com"],
                           notify_developer=True)  # fmt: skip
    alert = {"alert_id": "a1", "severity": "warning", "summary": "s", **about_key}
    message = sinks.email(sink, alert, "dana@example.com")
    assert message["To"] == "ops@example.com, dana@example.com"
    assert message["Message-ID"] == "<a1@sluice>"


def test_a_spend_rate_on_every_key_names_the_runaway_one(tmp_path: Path) -> None:
    keys = {"vk-a": "sk-sluice-every-a-0000000000000000", "vk-b": "sk-sluice-every-b-0000000000000000"}
    access = [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}]
    with FakeUpstreamThread() as upstream:
        cfg = config(upstream.base_url, "http://127.0.0.1:1")
        cfg["virtual_keys"] = [{"id": k, "value": v, "provider_configs": access} for k, v in keys.items()]
        cfg["alerts"]["spend_rate"] = [{"id": "any-key", "virtual_key_id": "*", "max_dollars_per_hour": 0.000001}]
        with GatewayThread(cfg, tmp_path) as gw:
            monitor = gw.services.alerts.monitor  # type: ignore[union-attr]

            def spend(key: str) -> None:
                client = anthropic.Anthropic(base_url=gw.base_url, api_key=keys[key], max_retries=0)
                client.messages.create(
                    model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "$"}]
                )
                gw.request_log()

            spend("vk-a")
            assert [a["scope_id"] for a in gw.call(monitor.check())] == ["vk-a"]
            spend("vk-b")
            spend("vk-a")
            assert [a["scope_id"] for a in gw.call(monitor.check())] == ["vk-b"]  # vk-a: once this hour


def test_every_key_is_for_keys_only() -> None:
    from pydantic import ValidationError

    from sluice.settings import SpendRateConfig

    with pytest.raises(ValidationError, match="virtual_key_id only"):
        SpendRateConfig(id="x", team_id="*", max_dollars_per_hour=1)


def test_an_id_with_a_newline_cannot_add_mail_headers() -> None:
    from sluice.alerts import sinks
    from sluice.settings import AlertSinkConfig

    sink = AlertSinkConfig(name="m", type="email", smtp_host="h", sender="s@example.com", to=["ops@example.com"])
    alert = {"alert_id": "a2", "severity": "warning", "summary": "budget 'x\r\nBcc: evil@example.com' reached 50%"}
    message = sinks.email(sink, alert)
    headers = message.as_string().split("\n\n", 1)[0]  # the body may say anything; the headers may not
    assert "\nBcc:" not in headers and message["Bcc"] is None
    assert message["Subject"] == "[Sluice warning] budget 'x Bcc: evil@example.com' reached 50%"


def test_validate_warns_of_an_alert_on_an_unknown_budget() -> None:
    from sluice.settings import parse_config

    cfg = parse_config(
        {
            "audit": {"hmac_key": "k" * 32},
            "alerts": {
                "budgets": [{"budget_id": "nope"}],
                "sinks": [{"name": "s", "type": "slack", "url": "http://x"}],
            },
        }
    )
    assert any("'nope'" in w for w in cfg.warnings())


def test_an_email_alert_waits_out_a_mail_server_outage_across_a_restart(tmp_path: Path) -> None:
    with socket.socket() as probe:  # the mail server's port, before it listens
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    mail = MailSink()
    with FakeUpstreamThread() as upstream:
        cfg = config(upstream.base_url, "http://127.0.0.1:1")
        cfg["alerts"]["provider_health"] = False
        cfg["alerts"]["sinks"] = [
            {"name": "mail", "type": "email", "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
             "sender": "sluice@example.com", "to": ["platform@example.com"]},
        ]  # fmt: skip
        with GatewayThread(cfg, tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "$"}])
            gateway.request_log()
            fired = gateway.call(gateway.services.alerts.monitor.check())  # type: ignore[union-attr]
            assert [a["type"] for a in fired] == ["spend_rate"]
            time.sleep(0.5)  # the runner tries (connection refused) and backs off
        smtp = Controller(mail, hostname="127.0.0.1", port=smtp_port)
        smtp.start()
        try:
            with GatewayThread(cfg, tmp_path) as gateway:  # the same store: the alert waits in the outbox
                wait(lambda: len(mail.messages) >= 1)
                time.sleep(0.5)
                assert gateway.call(gateway.services.alerts.monitor.check()) == []  # type: ignore[union-attr]
            with GatewayThread(cfg, tmp_path):  # once more: nothing is sent again
                time.sleep(1.0)
        finally:
            smtp.stop()
    assert len(mail.messages) == 1
    assert "Subject: [Sluice warning]" in mail.messages[0] and "vk-runaway" in mail.messages[0]
