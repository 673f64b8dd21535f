from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

ANTHROPIC_SECRET = "sk-ant-upstream-SECRET-0123456789"
OPENAI_SECRET = "sk-openai-upstream-SECRET-0123456789"
DEV_KEY = "sk-sluice-test-dev-000000000000"
JUNIOR_KEY = "sk-sluice-test-junior-000000000"
OFF_KEY = "sk-sluice-test-off-000000000000"
EXPIRED_KEY = "sk-sluice-test-expired-00000000"
FAKE_KEY = "sk-sluice-test-fake-00000000000"
LOCAL_KEY = "sk-sluice-test-local-0000000000"


def contract_config(upstream_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "anthropic": {
                "base_url": upstream_url,
                "keys": [{"name": "anthropic-primary", "value": ANTHROPIC_SECRET}],
            },
            "openai": {
                "base_url": upstream_url + "/v1",
                "keys": [{"name": "openai-primary", "value": OPENAI_SECRET}],
            },
            # A self-hosted OpenAI-compatible server: no credential at all.
            "vllm": {"base_url": upstream_url + "/v1"},
        },
        "virtual_keys": [
            {
                "id": "vk-dev",
                "name": "Developer Dana",
                "value": DEV_KEY,
                "team_id": "team-platform",
                "customer_id": "cust-acme",
                "provider_configs": [
                    {"provider": "anthropic", "allowed_models": ["claude-sonnet-4-6", "claude-haiku-4-5-20251001"]},
                    {"provider": "openai", "allowed_models": ["gpt-4o-mini", "text-embedding-3-small"]},
                ],
            },
            {
                "id": "vk-junior",
                "value": JUNIOR_KEY,
                "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5-20251001"]}],
            },
            {"id": "vk-off", "value": OFF_KEY, "is_active": False, "provider_configs": [{"provider": "anthropic"}]},
            {
                "id": "vk-expired",
                "value": EXPIRED_KEY,
                "expires_at": "2020-01-01T00:00:00Z",
                "provider_configs": [{"provider": "anthropic"}],
            },
            {"id": "vk-fake", "value": FAKE_KEY, "provider_configs": [{"provider": "fake"}]},
            {"id": "vk-local", "value": LOCAL_KEY, "provider_configs": [{"provider": "vllm"}]},
        ],
    }


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstreamThread]:
    with FakeUpstreamThread() as fake:
        yield fake


@pytest.fixture(scope="session")
def gateway(upstream: FakeUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    tmp: Path = tmp_path_factory.mktemp("gateway")
    with GatewayThread(contract_config(upstream.base_url), tmp) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeUpstreamThread) -> None:
    upstream.upstream.reset()


def log_entry(gateway: GatewayThread, request_id: str) -> dict[str, Any]:
    # The record is handed over when the server finishes the response, which may be a moment
    # after the client has read its last byte.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for row in gateway.request_log():
            if row["request_id"] == request_id:
                return row
        time.sleep(0.02)
    raise AssertionError(f"request {request_id} not in the request log")
