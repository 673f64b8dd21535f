"""A live reload (SIGHUP, `sluice config apply`) applies the new retry and circuit breaker
settings to the next request, not only the new providers and routing rules."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from sluice.settings import RoutingConfig
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

KEY = "sk-sluice-reload-0000000000000000"


def config(upstream_url: str) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream_url, "keys": [{"name": "only", "value": "sk-a"}]}},
        "virtual_keys": [{"id": "vk-reload", "value": KEY, "provider_configs": [{"provider": "anthropic"}]}],
        "routing": {
            "retries": {"attempts": 1, "backoff_base_s": 0.01, "backoff_max_s": 1},
            "circuit_breaker": {"failure_threshold": 5, "open_seconds": 60},
        },
    }


def ask(gateway: GatewayThread) -> int:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
    try:
        client.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "reload"}]
        )
    except anthropic.APIStatusError as err:
        return err.status_code
    return 200


def reload_routing(gateway: GatewayThread, routing: dict[str, Any]) -> None:
    base = gateway.services.config
    changed = base.model_copy(update={"routing": RoutingConfig.model_validate(routing)})
    gateway.call(gateway.services.reload_file(changed, "test"))  # what SIGHUP does


def test_reload_applies_new_retry_and_breaker_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    with FakeUpstreamThread() as upstream, GatewayThread(config(upstream.base_url), tmp_path_factory.mktemp("l")) as gw:
        upstream.upstream.fail_next(500, times=1)
        assert ask(gw) == 500 and len(upstream.requests) == 1  # one attempt, as configured
        assert ask(gw) == 200  # and the key's breaker is closed again

        reload_routing(
            gw,
            {
                "retries": {"attempts": 3, "backoff_base_s": 0.01, "backoff_max_s": 1},
                "circuit_breaker": {"failure_threshold": 2, "open_seconds": 60},
            },
        )
        upstream.upstream.reset()
        upstream.upstream.fail_next(500, times=1)
        assert ask(gw) == 200 and len(upstream.requests) == 2  # retried under the new setting

        # Two failures in a row now open the key's breaker: the next request is refused at no
        # cost instead of reaching the failing provider (the old threshold was five).
        upstream.upstream.reset()
        upstream.upstream.fail_next(500, times=2)
        assert ask(gw) == 502 and len(upstream.requests) == 2  # the third attempt finds it open
        assert ask(gw) == 502 and len(upstream.requests) == 2
