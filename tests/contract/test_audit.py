"""The audit log through a running gateway: every request sealed into the chain, refusals and
auth failures too, no secret anywhere, and no answer without a durable record by default."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-audit-secret-0000000000"
PROVIDER_SECRET = "sk-ant-audit-provider-secret-999"
AUDIT_KEY = "audit-hmac-key-0123456789abcdef"


def config(upstream_url: str, **audit: Any) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream_url, "keys": [{"name": "primary", "value": PROVIDER_SECRET}]}},
        "virtual_keys": [
            {
                "id": "vk-audited",
                "value": KEY,
                "team_id": "team-a",
                "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}],
            }
        ],
        "budgets": [{"id": "b", "virtual_key_id": "vk-audited", "max_limit": 100, "reset_duration": "1d"}],
        "audit": {"hmac_key": AUDIT_KEY, "key_id": "k1", **audit},
    }


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[GatewayThread, FakeUpstreamThread, Path]]:
    with FakeUpstreamThread() as upstream, GatewayThread(config(upstream.base_url), tmp_path) as gateway:
        yield gateway, upstream, tmp_path


def records(gateway: GatewayThread) -> list[Any]:
    async def read() -> list[Any]:
        return [r async for r in gateway.services.store.audit_records()]

    return list(gateway.call(read()))


def test_requests_denials_and_auth_failures_are_sealed(stack: tuple[GatewayThread, FakeUpstreamThread, Path]) -> None:
    gateway, _, tmp = stack
    ok = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
    with ok.messages.stream(
        model="claude-haiku-4-5", max_tokens=20, messages=[{"role": "user", "content": "audit me"}]
    ) as stream:
        "".join(stream.text_stream)
    with pytest.raises(anthropic.PermissionDeniedError):
        ok.messages.create(model="claude-opus-4-1", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-sluice-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    gateway.request_log()  # wait until the last request has been finished and recorded
    chain = records(gateway)
    assert [r.kind for r in chain] == ["config_change", "request", "denied", "auth_failure"]  # the budget first
    found = chain[1:]
    served = found[0].data
    assert served["virtual_key"] == "vk-audited" and served["provider_key"] == "primary"
    assert served["tokens"]["output"] > 0 and served["cost_pico"] > 0
    assert served["budget"]["x-sluice-budget-id"] == "b"  # the budget state the decision saw
    assert found[1].data["error_kind"] == "POLICY_MODEL_DENIED" and found[1].actor == "vk-audited"
    # Authentication failures are counted per (surface, address, reason); the first is written at once.
    assert found[2].actor == "address:127.0.0.1"
    assert found[2].data == {
        "surface": "anthropic_messages",
        "address": "127.0.0.1",
        "reason": "invalid_credential",
        "count": 1,
        "window_ms": 0,
    }

    from sluice.audit.chain import verify

    assert verify(chain, {"k1": AUDIT_KEY.encode()}).ok
    # No secret in the store: not the virtual key, not the provider key, not the audit key.
    raw = b"".join(p.read_bytes() for p in tmp.iterdir() if p.name.startswith("sluice.db"))
    for secret in (KEY, PROVIDER_SECRET, AUDIT_KEY):
        assert secret.encode() not in raw


def test_no_answer_without_a_durable_audit_record(stack: tuple[GatewayThread, FakeUpstreamThread, Path]) -> None:
    gateway, _, _ = stack

    async def broken(records: list[Any]) -> None:
        raise OSError("disk full")

    gateway.services.store.append_audit = broken  # type: ignore[method-assign]
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as exc:
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert "could not be recorded in the audit log" in exc.value.message
    with pytest.raises(anthropic.APIStatusError):  # a stream is stopped before its last event
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            "".join(stream.text_stream)


def test_a_request_seals_its_record_and_its_spend_in_one_commit(tmp_path: Path) -> None:
    """The audit record and the ledger row of a request are queued before either is awaited, so
    they share one transaction (the request-log row lingers, nobody awaits it)."""
    cfg = {
        **config("http://unused"),
        "store": {"url": f"sqlite:///{tmp_path / 'sluice.db'}", "linger_ms": 1000},
    }
    with FakeUpstreamThread() as upstream:
        cfg["providers"]["anthropic"]["base_url"] = upstream.base_url
        with GatewayThread(cfg, tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            ask = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
            client.messages.create(**ask)  # type: ignore[call-overload]  # the chain head is read once
            gateway.request_log()
            before = gateway.services.store.write_counts()
            client.messages.create(**ask)  # type: ignore[call-overload]
            after = gateway.services.store.write_counts()
            assert (after[0] - before[0], after[1] - before[1]) == (1, 2)  # one commit: ledger row + audit record
            assert len(gateway.request_log()) == 2


def test_a_settlement_durable_nowhere_is_sealed_again_as_refused(
    stack: tuple[GatewayThread, FakeUpstreamThread, Path],
) -> None:
    """The audit record is queued beside the ledger row; when the spend then cannot be made durable,
    the answer is refused and a later record of the same request says so."""
    from sluice.governance.ledger_writer import SpendNotDurable

    gateway, _, _ = stack

    async def nowhere(row: Any) -> None:
        raise SpendNotDurable("disk full")

    gateway.services.limits._writer.write = nowhere  # type: ignore[method-assign]
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as exc:
        client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert "cost could not be recorded" in exc.value.message
    for _ in range(500):  # the request is recorded once the refusal has gone out
        if logged := gateway.request_log():
            break
        threading.Event().wait(0.01)
    (entry,) = logged
    mine = [r.data for r in records(gateway) if r.data.get("request_id") == entry["request_id"]]
    assert [m["decision"] for m in mine] == ["allow", "error"]  # sealed beside the ledger row, then corrected
    assert "cost could not be recorded" in mine[-1]["reason"]


def test_opting_out_serves_when_the_audit_log_is_down(tmp_path: Path) -> None:
    with (
        FakeUpstreamThread() as upstream,
        GatewayThread(config(upstream.base_url, refuse_unrecorded=False), tmp_path) as gateway,
    ):

        async def broken(records: list[Any]) -> None:
            raise OSError("disk full")

        gateway.services.store.append_audit = broken  # type: ignore[method-assign]
        client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
        assert client.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        ).content


def test_content_is_captured_only_where_enabled_and_redacted(tmp_path: Path) -> None:
    with FakeUpstreamThread() as upstream:
        cfg = config(upstream.base_url, capture_content={"teams": ["team-a"]})
        cfg["virtual_keys"].append(
            {"id": "vk-private", "value": KEY + "-2", "provider_configs": [{"provider": "anthropic"}]}
        )
        with GatewayThread(cfg, tmp_path) as gateway:
            leak = "deploy with AKIAIOSFODNN7EXAMPLE please"
            captured = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            with captured.messages.stream(
                model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": leak}]
            ) as stream:
                "".join(stream.text_stream)
            private = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY + "-2", max_retries=0)
            private.messages.create(
                model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "not recorded"}]
            )
            gateway.request_log()
            found = {r.actor: r.data for r in records(gateway) if r.kind == "request"}
    content = found["vk-audited"]["content"]
    assert "[REDACTED:aws_access_key]" in content["request"] and "AKIAIOSFODNN7EXAMPLE" not in content["request"]
    assert content["response"].startswith("echo: deploy with [REDACTED:aws_access_key]")  # the streamed answer
    assert "content" not in found["vk-private"]  # a key outside the capture list: no content at all


def test_metrics_show_the_export_backlog(tmp_path: Path) -> None:
    import urllib.request

    with FakeUpstreamThread() as upstream:
        cfg = config(
            upstream.base_url,
            exporters=[{"name": "siem", "type": "webhook", "url": "http://127.0.0.1:1/x", "secret": "s"}],
        )
        with GatewayThread(cfg, tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            client.messages.create(model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}])
            gateway.request_log()
            with urllib.request.urlopen(gateway.base_url + "/metrics", timeout=5) as resp:
                text = resp.read().decode()
    # The sink is unreachable: the budget's config change and the request wait in the outbox.
    assert 'sluice_audit_export_backlog{exporter="siem"} 2.0' in text
    assert "sluice_request_log_recorded 1.0" in text
