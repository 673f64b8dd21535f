"""Alerts through a running gateway: a budget threshold and a soft budget crossed by real traffic
reach a Standard Webhooks endpoint (signature checked), Slack and an SMTP server once each, are
recorded in the audit log, and a restart neither loses nor repeats them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import pytest
from aiosmtpd.controller import Controller

from sluice.alerts.sinks import sign, signing_key
from sluice.settings import ConfigError, parse_config
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-alerts-0000000000000000"
SECRET = "whsec_" + base64.b64encode(b"alert-signing-key-0123456789").decode()


class HookSink:
    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                sink.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def on(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(h, b) for p, h, b in self.received if p == path]


class MailSink:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode())
        return "250 OK"


def config(upstream: str, hooks: str, smtp_port: int) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream, "keys": [{"name": "primary", "value": "sk-ant-x"}]}},
        "virtual_keys": [
            {
                "id": "vk-a",
                "value": KEY,
                "team_id": "team-a",
                "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}],
            }
        ],
        "budgets": [{"id": "team-a-daily", "team_id": "team-a", "max_limit": 100, "reset_duration": "1d"}],
        "audit": {"hmac_key": "alerts-audit-key-0123456789abcdef"},
        "alerts": {
            "interval_s": 0.2,
            "budgets": [{"budget_id": "team-a-daily", "thresholds": [0.00001, 90]}],
            "soft_budgets": [{"id": "team-a-soft", "team_id": "team-a", "max_limit": 1e-9, "reset_duration": "1d"}],
            "sinks": [
                {"name": "hook", "type": "webhook", "url": hooks + "/hook", "secret": SECRET},
                {"name": "slack", "type": "slack", "url": hooks + "/slack"},
                {"name": "teams", "type": "teams", "url": hooks + "/teams"},
                {
                    "name": "mail",
                    "type": "email",
                    "smtp_host": "127.0.0.1",
                    "smtp_port": smtp_port,
                    "sender": "sluice@example.com",
                    "to": ["platform@example.com"],
                },
            ],
        },
    }


def wait(predicate: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_alerts_delivered_once_each_across_a_restart(tmp_path: Path) -> None:
    hooks, mail = HookSink(), MailSink()
    with socket.socket() as probe:  # aiosmtpd's controller wants a real port
        probe.bind(("127.0.0.1", 0))
        smtp_port = probe.getsockname()[1]
    smtp = Controller(mail, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        with FakeUpstreamThread() as upstream:
            cfg = config(upstream.base_url, hooks.url, smtp_port)
            with GatewayThread(cfg, tmp_path) as gateway:
                client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
                client.messages.create(
                    model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "spend"}]
                )
                wait(lambda: len(hooks.on("/hook")) >= 2 and len(mail.messages) >= 2 and len(hooks.on("/teams")) >= 2)
                time.sleep(0.6)  # a few more checks: nothing fires twice
            first = list(hooks.received), list(mail.messages)
            with GatewayThread(cfg, tmp_path) as gateway:  # the same store: claims and positions survive
                time.sleep(1.5)
                records = gateway.call(_alerts(gateway))
    finally:
        smtp.stop()
    assert (list(hooks.received), list(mail.messages)) == first  # nothing sent again after the restart
    webhook = hooks.on("/hook")
    assert len(webhook) == 2 and len(hooks.on("/slack")) == 2 and len(hooks.on("/teams")) == 2
    assert len(mail.messages) == 2
    types = sorted(json.loads(body)["type"] for _, body in webhook)
    assert types == ["sluice.alert.budget_threshold", "sluice.alert.soft_budget_threshold"]
    for headers, body in webhook:
        msg_id, ts = headers["webhook-id"], headers["webhook-timestamp"]
        expected = hmac.new(signing_key(SECRET), f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()
        assert abs(int(ts) - time.time()) < 120
    budget = next(json.loads(b)["data"] for _, b in webhook if b'"budget_threshold"' in b)
    assert budget["budget"] == "team-a-daily" and float(budget["threshold_percent"]) == 0.00001
    assert budget["severity"] == "warning" and budget["scope_id"] == "team-a"
    soft = next(json.loads(b)["data"] for _, b in webhook if b'"soft_budget_threshold"' in b)
    assert float(soft["threshold_percent"]) == 100 and soft["severity"] == "critical"  # one alert for the jump
    assert any("Subject: [Sluice critical] soft budget 'team-a-soft'" in m for m in mail.messages)
    assert "reached" in json.loads(hooks.on("/slack")[0][1])["text"]
    assert sorted(r["type"] for r in records) == ["budget_threshold", "soft_budget_threshold"]


async def _alerts(gateway: GatewayThread) -> list[dict[str, Any]]:
    return [r.data async for r in gateway.services.store.audit_records() if r.kind == "alert"]


def test_signature_matches_the_spec_example() -> None:
    # The example of the Standard Webhooks spec (github.com/standard-webhooks/standard-webhooks, spec/).
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_alerts_need_the_audit_log() -> None:
    with pytest.raises(ConfigError, match="audit"):
        parse_config({"alerts": {"sinks": [{"name": "s", "type": "slack", "url": "http://x"}]}})
