"""A live reload (SIGHUP re-reads the file) rebuilds the guardrails' rule sets: a rule it adds
applies to the next request, a rule it removes no longer does, and a session's placeholders made
before the reload are still restored after it."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from sluice.settings import GuardrailsConfig
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-guard-reload-000000000"


def config(upstream_url: str) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream_url, "keys": [{"name": "only", "value": "sk-a"}]}},
        "virtual_keys": [{"id": "vk-greload", "value": KEY, "provider_configs": [{"provider": "anthropic"}]}],
        "guardrails": {"placeholder_key": "reload-test-key"},
    }


def ask(gateway: GatewayThread, text: str) -> int:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
    try:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": text}])
    except anthropic.APIStatusError as err:
        return err.status_code
    return 200


def reload_guardrails(gateway: GatewayThread, guardrails: dict[str, Any]) -> None:
    base = gateway.services.config
    changed = base.model_copy(update={"guardrails": GuardrailsConfig.model_validate(guardrails)})
    gateway.call(gateway.services.reload_file(changed, "test"))  # what SIGHUP does


def test_reload_adds_and_removes_rules(tmp_path_factory: pytest.TempPathFactory) -> None:
    with FakeUpstreamThread() as upstream, GatewayThread(config(upstream.base_url), tmp_path_factory.mktemp("r")) as gw:
        assert ask(gw, "a note about Acme Corp") == 200
        block = {"name": "no-acme", "detector": "deny", "terms": ["Acme Corp"], "action": "block"}
        reload_guardrails(gw, {"placeholder_key": "reload-test-key", "sets": {"standard": {"rules": [block]}}})
        before = len(upstream.requests)
        assert ask(gw, "a note about Acme Corp") == 403
        assert len(upstream.requests) == before  # refused before any provider call
        assert ask(gw, "nothing to see") == 200

        # Removed again (and the built-in secrets rule turned off): neither applies any more.
        reload_guardrails(gw, {"placeholder_key": "reload-test-key", "sets": {"standard": {"builtin": False}}})
        assert ask(gw, "a note about Acme Corp") == 200
        secret = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8sXkL2Ab"
        assert ask(gw, secret) == 200
        assert secret.encode() in upstream.requests[-1].body  # no longer redacted: the rule is gone


def test_reload_keeps_the_sessions_placeholders() -> None:
    from sluice.guardrails.service import Guardrails
    from sluice.storage.records import VirtualKey

    key = VirtualKey(id="vk-1", name="k", key_hash="h", key_hint="sk")
    rails = Guardrails(GuardrailsConfig(placeholder_key="one"))
    guard = rails.start(key, "s")
    assert guard is not None
    doc: dict[str, Any] = {"messages": [{"role": "user", "content": "sk-proj-" + "A1b2C3d4" * 5}]}
    guard.request(doc)
    placeholder = doc["messages"][0]["content"]
    assert placeholder.startswith("[sluice:openai_key:")
    rails.reconfigure(GuardrailsConfig(placeholder_key="two"))
    after = rails.start(key, "s")
    assert after is not None
    restored = after.answer(b'{"content": "' + placeholder.encode() + b'"}')
    assert restored == b'{"content":"sk-proj-' + b"A1b2C3d4" * 5 + b'"}'
