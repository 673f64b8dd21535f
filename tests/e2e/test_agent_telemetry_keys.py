"""The real Codex and Gemini CLIs, set up by `sluice connect ... --telemetry`, export their own
OpenTelemetry to Sluice with the person's virtual key as the bearer: the points land attributed to
that key and its person (never to what the client says about itself), their token counts show in
`/api/spend` as `agent_tokens` beside what the gateway metered, and the exports are forwarded to
observability.agent_telemetry's collector. Neither CLI reports a cost: `agent_cost_usd` stays 0.

What the CLIs sent is tests/fixtures/agent_telemetry/{codex,gemini_cli}.json."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from sluice.gateway_signin import otlp
from tests.admin.test_auth_failures import failures
from tests.e2e import agent_cli
from tests.fakes.upstream import FakeUpstreamThread
from tests.observability.otlp_collector import Collector
from tests.support import GatewayThread

FIXTURES = Path(__file__).parent.parent / "fixtures" / "agent_telemetry"
ADMIN_TOKEN = "agent-telemetry-admin-token-0123"
SINCE = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as found:
        yield found


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, collector: Collector) -> Iterator[GatewayThread]:
    agent_cli.installed("codex")
    agent_cli.installed("gemini")
    os.environ["SLUICE_ADMIN_TOKEN"] = ADMIN_TOKEN
    with FakeUpstreamThread() as upstream:
        config: dict[str, Any] = {
            "providers": {
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai-x"}]},
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-gemini-x"}]},
            },
            "pricing": {"gpt-5.5": {"input_cost_per_mtok": 1.25, "output_cost_per_mtok": 10}},
            "observability": {"agent_telemetry": {"forward": True, "endpoint": collector.url}},
            "audit": {"hmac_key": "agent-telemetry-audit-key-0123456789"},
        }
        try:
            with GatewayThread(config, tmp_path_factory.mktemp("agent-telemetry")) as gw:
                yield gw
        finally:
            os.environ.pop("SLUICE_ADMIN_TOKEN", None)


def admin(gw: GatewayThread, method: str, path: str, **kwargs: Any) -> Any:
    resp = httpx2.request(method, gw.base_url + path, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs)
    assert resp.status_code < 300, resp.text
    return resp.json()


def person_key(gw: GatewayThread, key_id: str, user_id: str, provider: str) -> str:
    made = admin(gw, "POST", "/api/keys", json={"id": key_id, "user_id": user_id, "grants": [{"provider": provider}]})
    return str(made["secret"])


def spend_row(gw: GatewayThread, user_id: str) -> dict[str, Any]:
    gw.call(gw.services.recorder.flush())
    [row] = [r for r in admin(gw, "GET", "/api/spend", params={"group_by": "user"})["rows"] if r["group"] == user_id]
    return dict(row)


def forwarded(collector: Collector, service: str) -> list[tuple[str, dict[str, str], Any]]:
    """The collector's exports whose resource is `service`'s."""
    found = []
    for path, headers, message in list(collector.received):
        resources = getattr(message, "resource_metrics", None) or getattr(message, "resource_logs", None) or []
        names = {a.value.string_value for r in resources for a in r.resource.attributes if a.key == "service.name"}
        if service in names:
            found.append((path, headers, message))
    return found


def identities(message: Any) -> set[tuple[str, str]]:
    resources = getattr(message, "resource_metrics", None) or message.resource_logs
    out = set()
    for resource in resources:
        attrs = {a.key: a.value.string_value for a in resource.resource.attributes}
        out.add((attrs.get("sluice.user.id", ""), attrs.get("sluice.virtual_key.id", "")))
    return out


def test_codex_exports_land_on_the_keys_person(gw: GatewayThread, collector: Collector, tmp_path: Path) -> None:
    key = person_key(gw, "vk-codex-ana", "u-ana", "openai")
    agent_cli.connect("codex", gw.base_url, key, tmp_path, "--model", "gpt-5.5", "--telemetry")
    argv = [str(agent_cli.installed("codex")), "exec", "--skip-git-repo-check", "say hi"]
    argv[2:2] = ["-c", "model_providers.sluice.request_max_retries=0"]
    result = agent_cli.run(argv, tmp_path, {"SLUICE_API_KEY": key}, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # `codex exec` flushes its exporters before it exits.
    points = gw.call(gw.services.store.agent_metrics("u-ana", SINCE))
    assert {p.virtual_key_id for p in points} == {"vk-codex-ana"} and {p.service for p in points} == {"codex_exec"}
    names = {p.metric for p in points}
    assert {"codex.api_request", "codex.conversation.turn.count", "codex.turn.token_usage"} <= names, names
    tokens = {p.attributes["token_type"]: p.value for p in points if p.metric == "codex.turn.token_usage"}
    assert set(tokens) == {"input", "output"} and tokens["input"] > 0  # cached/reasoning/total are parts of these
    row = spend_row(gw, "u-ana")
    assert row["requests"] >= 1 and row["agent_tokens"] == int(sum(tokens.values()))
    # The gateway meters cached input apart (its `tokens` leave it out); Codex's input holds it.
    assert row["agent_tokens"] >= row["tokens"] > 0
    assert float(row["agent_cost_usd"]) == 0  # Codex reports no cost

    sent = collector.wait_for(1) and forwarded(collector, "codex_exec")
    assert {path for path, _, _ in sent} >= {"/v1/metrics", "/v1/logs"}
    for _, headers, message in sent:
        assert key not in json.dumps(headers)
        assert identities(message) == {("u-ana", "vk-codex-ana")}


def test_gemini_cli_exports_land_on_the_keys_person(gw: GatewayThread, collector: Collector, tmp_path: Path) -> None:
    key = person_key(gw, "vk-gemini-bo", "u-bo", "gemini")
    out = agent_cli.connect("gemini-cli", gw.base_url, key, tmp_path, "--model", "gemini-2.5-flash", "--telemetry")
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    env = {name: value.strip("'") for name, value in env.items()}
    env["GEMINI_CLI_TRUST_WORKSPACE"] = "true"
    result = agent_cli.run([str(agent_cli.installed("gemini")), "-p", "say hi"], tmp_path, env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    points = gw.call(gw.services.store.agent_metrics("u-bo", SINCE))
    assert {p.virtual_key_id for p in points} == {"vk-gemini-bo"} and {p.service for p in points} == {"gemini-cli"}
    assert {"gemini_cli.session.count", "gemini_cli.api.request.count", "gemini_cli.token.usage"} <= {
        p.metric for p in points
    }
    tokens = [p for p in points if p.metric == "gemini_cli.token.usage"]
    assert {p.attributes["type"] for p in tokens} <= {"input", "output", "thought", "tool"}  # not `cache`
    row = spend_row(gw, "u-bo")
    assert row["requests"] >= 1 and row["agent_tokens"] == int(sum(p.value for p in tokens)) > 0
    assert row["agent_tokens"] >= row["tokens"] > 0
    sent = forwarded(collector, "gemini-cli")
    assert {path for path, _, _ in sent} >= {"/v1/metrics", "/v1/logs"}
    for _, headers, message in sent:
        assert key not in json.dumps(headers)
        assert identities(message) == {("u-bo", "vk-gemini-bo")}


def test_a_wrong_key_is_refused_and_counted(gw: GatewayThread) -> None:
    body = (FIXTURES / "gemini_cli.json").read_text()
    [export] = [e for e in json.loads(body)["exports"] if e["path"] == "/v1/metrics"]
    raw = base64.b64decode(export["body_b64"])
    resp = httpx2.post(
        f"{gw.base_url}/v1/metrics",
        content=raw,
        headers={"authorization": "Bearer sk-sluice-not-a-key-0000000000", "content-type": export["content_type"]},
    )
    assert resp.status_code == 401, resp.text
    # The auth guard counted it, as it counts a wrong key on the model API.
    assert any(f.get("surface") == "telemetry" for f in gw.call(failures(gw.services))), gw.call(failures(gw.services))
    # A revoked key is refused at the next export, as at the next model request (403, "revoked").
    key = person_key(gw, "vk-revoked-cy", "u-cy", "gemini")
    headers = {"authorization": f"Bearer {key}", "content-type": export["content_type"]}
    assert httpx2.post(f"{gw.base_url}/v1/metrics", content=raw, headers=headers).status_code == 200
    admin(gw, "POST", "/api/keys/vk-revoked-cy/revoke")
    refused = httpx2.post(f"{gw.base_url}/v1/metrics", content=raw, headers=headers)
    assert refused.status_code == 403 and "revoked" in refused.text


@pytest.mark.parametrize("name", ["codex", "gemini_cli"])
def test_the_recorded_exports_still_parse(name: str) -> None:
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    assert {e["path"] for e in doc["exports"]} >= {"/v1/metrics", "/v1/logs"}
    for export in doc["exports"]:
        signal = export["path"].rsplit("/", 1)[-1]
        assert otlp.parse(signal, base64.b64decode(export["body_b64"]), export["content_type"]).ByteSize() > 0
