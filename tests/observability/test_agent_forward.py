"""Signed-in agents' OTLP forwarded to a collector (observability.agent_telemetry.forward): each
export arrives decoded by opentelemetry-proto with the person's identity on every resource, the
client's spoofed identity replaced, the gateway token never sent on; a collector that refuses or
is gone is counted, a full queue drops without waiting, and the receiver answers 200 either way."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from sluice.observability.agent_forward import AgentForwarder, identity_attributes
from sluice.settings import AgentTelemetryConfig, parse_config
from sluice.upstream.client import UpstreamClient
from tests.fakes.upstream import FakeUpstreamThread
from tests.integration.signin_tokens import SignedIn, sign_in_directly
from tests.observability.otlp_collector import Collector
from tests.support import GatewayThread, free_port

FIXTURE = Path(__file__).parent.parent / "fixtures" / "claude_gateway" / "telemetry.json"
COLLECTOR_TOKEN = "collector-credential-0123"


def _config(base: str, upstream: str, collector: str) -> dict[str, Any]:
    return {
        "audit": {"hmac_key": "forward-audit-key-0123456789"},
        "providers": {"anthropic": {"base_url": upstream, "keys": [{"name": "a", "value": "sk-ant-x"}]}},
        "access_profiles": [{"id": "developers", "groups": ["engineering"], "provider_configs": []}],
        "observability": {
            "agent_telemetry": {
                "forward": True,
                "endpoint": collector,
                "headers": {"authorization": f"Bearer {COLLECTOR_TOKEN}"},
            }
        },
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


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, Collector]]:
    tmp = tmp_path_factory.mktemp("agent-forward")
    port = free_port()
    with FakeUpstreamThread() as upstream, Collector() as collector:
        config = _config(f"http://127.0.0.1:{port}", upstream.base_url, collector.url)
        with GatewayThread(config, tmp, port=port) as gw:
            yield gw, collector


def recorded(path: str) -> bytes:
    """What the real Claude Code posted (tests/fixtures/claude_gateway/telemetry.json)."""
    doc = json.loads(FIXTURE.read_text())
    return base64.b64decode(next(e["body_b64"] for e in doc["exports"] if e["path"] == path))


def post(gw: GatewayThread, who: SignedIn, path: str, body: bytes) -> httpx2.Response:
    headers = {"authorization": f"Bearer {who.access_token}", "content-type": "application/x-protobuf"}
    return httpx2.post(f"{gw.base_url}{path}", content=body, headers=headers)


def resource_attributes(message: Any) -> list[dict[str, Any]]:
    resources = getattr(message, "resource_metrics", None) or message.resource_logs
    return [{a.key: a.value.string_value for a in r.resource.attributes} for r in resources]


def test_the_real_clients_exports_reach_the_collector_with_the_persons_identity(
    stack: tuple[GatewayThread, Collector],
) -> None:
    gw, collector = stack
    who = gw.call(sign_in_directly(gw.services, ["engineering"]))
    start = len(collector.received)
    assert post(gw, who, "/v1/metrics", recorded("/v1/metrics")).status_code == 200
    assert post(gw, who, "/v1/logs", recorded("/v1/logs")).status_code == 200
    arrived = collector.wait_for(start + 2)[start:]
    assert sorted(path for path, _, _ in arrived) == ["/v1/logs", "/v1/metrics"]
    for _path, headers, message in arrived:
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["authorization"] == f"Bearer {COLLECTOR_TOKEN}"  # the collector's, never the agent's
        assert who.access_token not in json.dumps(headers)
        for attrs in resource_attributes(message):
            assert attrs["sluice.user.id"] == attrs["enduser.id"] == who.user_id
            assert attrs["sluice.virtual_key.id"] == who.key.id and attrs["sluice.access_profile"] == "developers"
            assert attrs["service.name"] == "claude-code"  # the client's own attributes stay
    [metrics] = [m for p, _, m in arrived if p == "/v1/metrics"]
    names = {m.name for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "claude_code.cost.usage" in names  # the points themselves, as the agent sent them


def test_a_client_cannot_claim_someone_elses_identity(stack: tuple[GatewayThread, Collector]) -> None:
    gw, collector = stack
    who = gw.call(sign_in_directly(gw.services, ["engineering"]))
    export = ExportMetricsServiceRequest.FromString(recorded("/v1/metrics"))
    for rm in export.resource_metrics:
        rm.resource.attributes.append(KeyValue(key="sluice.user.id", value=AnyValue(string_value="the-ceo")))
        rm.resource.attributes.append(KeyValue(key="enduser.id", value=AnyValue(string_value="the-ceo")))
    start = len(collector.received)
    assert post(gw, who, "/v1/metrics", export.SerializeToString()).status_code == 200
    [(_, _, message)] = collector.wait_for(start + 1)[start:]
    for rm in message.resource_metrics:
        pairs = [
            (a.key, a.value.string_value) for a in rm.resource.attributes if a.key in ("sluice.user.id", "enduser.id")
        ]
        assert pairs == [("enduser.id", who.user_id), ("sluice.user.id", who.user_id)]


def test_a_refusing_collector_is_counted_and_the_agent_still_gets_200(tmp_path: Path) -> None:
    port = free_port()
    with FakeUpstreamThread() as upstream, Collector(status=503) as collector:
        with GatewayThread(
            _config(f"http://127.0.0.1:{port}", upstream.base_url, collector.url), tmp_path, port=port
        ) as gw:
            who = gw.call(sign_in_directly(gw.services, ["engineering"]))
            assert post(gw, who, "/v1/metrics", recorded("/v1/metrics")).status_code == 200
            collector.wait_for(1)
            forwarder = gw.services.agent_forward
            assert forwarder is not None

            async def settled() -> None:
                await forwarder._queue.join()  # the answer was counted once the export is done

            gw.call(settled())
            assert forwarder.counts["metrics", "failed"] == 1 and forwarder.counts["metrics", "sent"] == 0
            scraped = httpx2.get(f"{gw.base_url}/metrics").text
            assert 'sluice_agent_telemetry_forwarded_total{outcome="failed",signal="metrics"} 1.0' in scraped


async def test_a_full_queue_drops_without_waiting_and_counts_it() -> None:
    config = AgentTelemetryConfig(forward=True, endpoint="http://127.0.0.1:9", queue_size=2)
    forwarder = AgentForwarder(config, "http://127.0.0.1:9", UpstreamClient())  # not started: nothing drains
    identity = identity_attributes("u1", "k1", None, None)
    accepted = [forwarder.submit("metrics", ExportMetricsServiceRequest(), identity) for _ in range(5)]
    assert accepted == [True, True, False, False, False]
    assert forwarder.counts["metrics", "dropped"] == 3 and forwarder.queued == 2
    await asyncio.sleep(0)


def test_forwarding_needs_a_collector() -> None:
    with pytest.raises(ValueError, match="needs a collector"):
        parse_config({"observability": {"agent_telemetry": {"forward": True}}})
    traced = parse_config(
        {"observability": {"tracing": {"endpoint": "http://otel:4318/v1/traces"}, "agent_telemetry": {"forward": True}}}
    )
    assert traced.observability.agent_collector() == "http://otel:4318"
    assert parse_config({}).observability.agent_collector() is None  # off by default
