"""The real Claude Code, signed in to Sluice, exports its own OpenTelemetry to the gateway: its
metric points land attributed to the signed-in person and show in `/api/spend` as
`agent_cost_usd` beside what the gateway metered.

The sign-in itself (the /login screen, the browser, refresh, SCIM) is test_gateway_signin_claude.py;
here the client starts with the credential /login leaves behind (`enterpriseGateway` and the
trusted gateway in ~/.claude/.credentials.json), for a person signed in as the device flow's last
step signs them in. What the client sent is tests/fixtures/claude_gateway/telemetry.json."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from sluice.gateway_signin import otlp
from tests.fakes.upstream import FakeUpstreamThread
from tests.integration.signin_tokens import SignedIn, sign_in_directly
from tests.observability.otlp_collector import Collector
from tests.support import GatewayThread, free_port

CLAUDE = Path(__file__).parent / "node_modules" / ".bin" / "claude"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "claude_gateway" / "telemetry.json"
HAIKU = "claude-haiku-4-5-20251001"
ADMIN_TOKEN = "telemetry-admin-token-0123456789"
# What makes the client export (code.claude.com/docs/en/monitoring-usage): telemetry on, the OTLP
# exporters, and a protocol; the endpoint is the gateway's, whatever the environment says.
TELEMETRY_ENV = {
    "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    "OTEL_LOGS_EXPORT_INTERVAL": "1000",
}


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as found:
        yield found


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[GatewayThread]:
    if not CLAUDE.exists():
        pytest.fail("Claude Code is not installed: run `make e2e-deps` (make test does it)")
    tmp = tmp_path_factory.mktemp("cc-telemetry")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    os.environ["SLUICE_ADMIN_TOKEN"] = ADMIN_TOKEN
    with FakeUpstreamThread() as upstream:
        config: dict[str, Any] = {
            "audit": {"hmac_key": "cc-telemetry-audit-key-0123456789"},
            "providers": {"anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-x"}]}},
            "access_profiles": [
                {"id": "developers", "groups": ["engineering"], "provider_configs": [{"provider": "anthropic"}]}
            ],
            "observability": {"agent_telemetry": {"forward": True, "endpoint": collector.url}},
            "auth": {
                "oidc": {
                    "issuer": "https://idp.example.com",
                    "client_id": "sluice",
                    "client_secret": "client-secret-0123456789",
                    "redirect_uri": f"{base}/auth/callback",
                },
                "session": {"secret": "session-secret-0123456789", "secure_cookie": False},
                "gateway_signin": {"public_url": base},
            },
        }
        try:
            with GatewayThread(config, tmp, port=port) as gw:
                yield gw
        finally:
            os.environ.pop("SLUICE_ADMIN_TOKEN", None)


def signed_in_home(tmp: Path, gw: GatewayThread, who: SignedIn) -> Path:
    """A developer machine after /login: settings that point at the gateway, the stored sign-in,
    and the gateway trusted (its loopback http "fingerprint")."""
    home = tmp / "home"
    (home / ".claude").mkdir(parents=True)
    (home / "work").mkdir()
    settings = {"forceLoginMethod": "gateway", "forceLoginGatewayUrl": gw.base_url}
    (home / ".claude" / "settings.json").write_text(json.dumps(settings))
    stored = {
        "url": gw.base_url,
        "jwt": who.access_token,
        "expiresAt": int((time.time() + 600) * 1000),
        "tokenEndpoint": f"{gw.base_url}/oauth/token",
    }
    trust = {"127.0.0.1": "http-loopback", f"127.0.0.1:{gw.port}": "http-loopback"}
    (home / ".claude" / ".credentials.json").write_text(
        json.dumps({"enterpriseGateway": stored, "gatewayTrust": trust})
    )
    projects = {str(home / "work"): {"hasTrustDialogAccepted": True}}
    (home / ".claude.json").write_text(
        json.dumps({"hasCompletedOnboarding": True, "theme": "dark", "projects": projects})
    )
    return home


def ask(home: Path, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TERM": "dumb",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        **extra_env,
    }
    return subprocess.run(
        [str(CLAUDE), "-p", "say hi", "--model", HAIKU, "--debug-file", str(home / "debug.log")],
        env=env,
        cwd=home / "work",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_real_clients_metrics_land_per_person_and_in_the_spend_report(
    gw: GatewayThread, collector: Collector, tmp_path: Path
) -> None:
    who = gw.call(sign_in_directly(gw.services, ["engineering"]))
    home = signed_in_home(tmp_path, gw, who)
    answered = ask(home, TELEMETRY_ENV)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    # `claude -p` flushes its exporters before it exits: the points are stored when it returns.
    points = gw.call(gw.services.store.agent_metrics(who.user_id, datetime(2020, 1, 1, tzinfo=UTC)))
    names = {p.metric for p in points}
    assert {"claude_code.session.count", "claude_code.cost.usage", "claude_code.token.usage"} <= names, names
    assert {p.virtual_key_id for p in points} == {who.key.id} and {p.service for p in points} == {"claude-code"}
    reported = sum(p.value for p in points if p.metric == "claude_code.cost.usage")
    assert reported > 0

    gw.call(gw.services.recorder.flush())
    spend = httpx2.get(
        f"{gw.base_url}/api/spend",
        params={"group_by": "user"},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert spend.status_code == 200, spend.text
    [row] = [r for r in spend.json()["rows"] if r["group"] == who.user_id]
    assert row["requests"] >= 1  # metered by the gateway
    assert abs(float(row["agent_cost_usd"]) - reported) < 1e-6  # and what the agent said it spent

    # observability.agent_telemetry.forward: the same exports reach the collector as the person's.
    arrived = collector.wait_for(2)
    assert {path for path, _, _ in arrived} >= {"/v1/metrics", "/v1/logs"}
    for _, headers, message in arrived:
        assert who.access_token not in str(headers)
        resources = getattr(message, "resource_metrics", None) or message.resource_logs
        for resource in resources:
            attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
            assert attrs["sluice.user.id"] == who.user_id and attrs["sluice.virtual_key.id"] == who.key.id


def test_without_a_protocol_the_client_sends_nothing(gw: GatewayThread, tmp_path: Path) -> None:
    """What the previous attempt saw: the client needs OTEL_EXPORTER_OTLP_PROTOCOL (or a managed
    `env` that sets it) before it exports to the gateway at all."""
    who = gw.call(sign_in_directly(gw.services, ["engineering"]))
    home = signed_in_home(tmp_path, gw, who)
    env = {k: v for k, v in TELEMETRY_ENV.items() if k != "OTEL_EXPORTER_OTLP_PROTOCOL"}
    answered = ask(home, env)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert gw.call(gw.services.store.agent_metrics(who.user_id, datetime(2020, 1, 1, tzinfo=UTC))) == []
    assert "No protocol is set for the metrics OTLP exporter" in (home / "debug.log").read_text()


def test_the_recorded_exports_still_parse() -> None:
    """The fixture, as the receiver reads it (a guard on the receiver's parser, not on the client)."""
    doc = json.loads(FIXTURE.read_text())
    signals = {e["path"] for e in doc["exports"]}
    assert {"/v1/metrics", "/v1/logs"} <= signals
    for export in doc["exports"]:
        message = otlp.parse(
            export["path"].rsplit("/", 1)[-1], base64.b64decode(export["body_b64"]), export["content_type"]
        )
        assert message.ByteSize() > 0
