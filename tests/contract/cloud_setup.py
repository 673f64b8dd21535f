"""One fake cloud upstream (Bedrock, Vertex, Azure, and the Anthropic/OpenAI APIs) and a gateway
configured with every cloud provider, shared by the cloud contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.fakes.aws_wire import AwsAccount
from tests.fakes.cloud import CloudFakeThread, CloudSettings, ServiceAccountKey, make_service_account
from tests.support import GatewayThread

AWS = AwsAccount("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLE", "us-east-1")
BEDROCK_API_KEY = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl"
AZURE_KEY = "azure-upstream-SECRET-0123456789"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-EXAMPLE"
ANTHROPIC_KEY = "sk-ant-cloud-upstream-SECRET"
SONNET_ON_BEDROCK = "us.anthropic.claude-sonnet-4-6"

SPLIT = "sk-sluice-cloud-split-0000000000"
BEDROCK = "sk-sluice-cloud-bedrock-00000000"
VERTEX = "sk-sluice-cloud-vertex-000000000"
AZURE = "sk-sluice-cloud-azure-0000000000"
AZURE_V1 = "sk-sluice-cloud-azure-v1-0000000"
AZURE_ENTRA = "sk-sluice-cloud-azure-entra-0000"
DIRECT = "sk-sluice-cloud-direct-000000000"
OTHER_VENDORS = "sk-sluice-cloud-other-vendors-00"  # Claude Code in Bedrock/Vertex mode on GPT or Gemini
WRONG = "sk-sluice-cloud-wrong-0000000000"


@dataclass
class CloudStack:
    gateway: GatewayThread
    fake: CloudFakeThread
    service_account: ServiceAccountKey

    def posts(self, prefix: str) -> list[Any]:
        return [r for r in self.fake.requests if r.method == "POST" and r.path.startswith(prefix)]


def cloud_config(base: str, service_account: dict[str, str]) -> dict[str, Any]:
    bedrock_models = {
        "claude-sonnet-4-6": SONNET_ON_BEDROCK,
        "claude-haiku-4-5": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        # What a Bedrock-style caller's id becomes at the /bedrock surface, mapped back again.
        "claude-haiku-4-5-20251001": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
        "claude-haiku-4-5-stream-exception": "us.anthropic.claude-haiku-4-5-stream-exception",
        "mistral-large": "mistral.mistral-large-2407-v1:0",
    }
    claude = [
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "claude-haiku-4-5-20251001",
        "claude-haiku-4-5-error-429",
        "claude-haiku-4-5-stream-exception",
    ]
    return {
        "providers": {
            "anthropic": {"base_url": base, "keys": [{"name": "anthropic-main", "value": ANTHROPIC_KEY}]},
            "openai": {"base_url": base + "/v1", "keys": [{"name": "openai-main", "value": "sk-upstream-openai-0"}]},
            "gemini": {"base_url": base, "keys": [{"name": "gemini-main", "value": "AIza-upstream-gemini-0"}]},
            "bedrock": {
                "base_url": base,
                "region": AWS.region,
                "access_key_id": AWS.access_key_id,
                "secret_access_key": AWS.secret_access_key,
                "session_token": AWS.session_token,
                "models": bedrock_models,
            },
            "bedrock-apikey": {
                "type": "bedrock",
                "base_url": base,
                "region": AWS.region,
                "keys": [{"name": "bedrock-key", "value": BEDROCK_API_KEY}],
                "models": bedrock_models,
            },
            "bedrock-wrong": {
                "type": "bedrock",
                "base_url": base,
                "region": AWS.region,
                "access_key_id": AWS.access_key_id,
                "secret_access_key": "not-the-secret",
                "models": bedrock_models,
            },
            "vertex": {
                "base_url": base,
                "region": "us-east5",
                "credentials": orjson.dumps(service_account).decode(),
                "models": {"claude-haiku-4-5": "claude-haiku-4-5@20251001"},
            },
            "azure": {
                "base_url": base,
                "api_version": "2024-10-21",
                "deployments": {"gpt-4o-mini": "chat-prod", "text-embedding-3-small": "embed-prod"},
                "keys": [{"name": "azure-main", "value": AZURE_KEY}],
            },
            "azure-entra": {
                "type": "azure",
                "base_url": base,
                "auth": "bearer",
                "deployments": {"gpt-4o-mini": "chat-prod"},
                "keys": [{"name": "entra", "value": ENTRA_TOKEN}],
            },
            "azure-v1": {
                "type": "azure",
                "base_url": base,
                "deployments": {"gpt-4o-mini": "chat-prod"},
                "keys": [{"name": "azure-main", "value": AZURE_KEY}],
            },
        },
        "virtual_keys": [
            {
                "id": "vk-split",
                "value": SPLIT,
                "provider_configs": [
                    {"provider": "anthropic", "weight": 60, "allowed_models": ["claude-sonnet-4-6"]},
                    {"provider": "bedrock", "weight": 40, "allowed_models": ["claude-sonnet-4-6"]},
                ],
            },
            {
                "id": "vk-bedrock",
                "value": BEDROCK,
                "provider_configs": [{"provider": "bedrock", "allowed_models": [*claude, "mistral-large"]}],
            },
            {
                "id": "vk-vertex",
                "value": VERTEX,
                "provider_configs": [{"provider": "vertex", "allowed_models": [*claude, "gemini-2.5-flash"]}],
            },
            {
                "id": "vk-azure",
                "value": AZURE,
                "provider_configs": [
                    {"provider": "azure", "allowed_models": ["gpt-4o-mini", "text-embedding-3-small"]}
                ],
            },
            {"id": "vk-azure-v1", "value": AZURE_V1, "provider_configs": [{"provider": "azure-v1"}]},
            {"id": "vk-azure-entra", "value": AZURE_ENTRA, "provider_configs": [{"provider": "azure-entra"}]},
            {
                "id": "vk-direct",
                "value": DIRECT,
                "provider_configs": [{"provider": "anthropic", "allowed_models": claude}],
            },
            {"id": "vk-wrong", "value": WRONG, "provider_configs": [{"provider": "bedrock-wrong"}]},
            {
                "id": "vk-other-vendors",
                "value": OTHER_VENDORS,
                "provider_configs": [
                    {"provider": "openai", "allowed_models": ["gpt-4o-mini"]},
                    {"provider": "gemini", "allowed_models": ["gemini-2.5-flash"]},
                ],
            },
        ],
        "pricing": {"claude-sonnet-4-6": {"input_cost_per_mtok": 3, "output_cost_per_mtok": 15}},
        "routing": {"retries": {"attempts": 1}},
    }


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudStack]:
    account = make_service_account("sluice-test")
    settings = CloudSettings(
        aws=AWS,
        bedrock_api_keys={BEDROCK_API_KEY},
        vertex=account,
        azure_key=AZURE_KEY,
        azure_entra_token=ENTRA_TOKEN,
        azure_deployments={"chat-prod", "embed-prod"},
    )
    with CloudFakeThread(settings) as fake:
        config = cloud_config(fake.base_url, account.info)
        with GatewayThread(config, tmp_path_factory.mktemp("cloud")) as gateway:
            yield CloudStack(gateway, fake, account)
