"""Builds the configured providers."""

from __future__ import annotations

from collections.abc import Callable

from sluice.providers.anthropic import AnthropicProvider
from sluice.providers.azure import AzureProvider
from sluice.providers.base import Provider, ProviderKey
from sluice.providers.bedrock import BedrockProvider
from sluice.providers.fake import FakeProvider
from sluice.providers.gemini import GeminiProvider
from sluice.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from sluice.providers.vertex import VertexProvider
from sluice.settings import DEFAULT_BASE_URLS, ProviderConfig, SluiceConfig, provider_type
from sluice.upstream.client import Timeouts, UpstreamClient
from sluice.upstream.pool import PoolLimits

_HTTP_TYPES: dict[str, Callable[..., Provider]] = {
    "anthropic": AnthropicProvider,
    "openai": OpenAIProvider,
    "openai_compatible": OpenAICompatibleProvider,
    "gemini": GeminiProvider,
}
# Cloud providers read their own settings (region, credentials, model maps) from the config.
_CLOUD_TYPES: dict[str, Callable[[str, ProviderConfig, UpstreamClient, Timeouts], Provider]] = {
    "azure": AzureProvider,
    "bedrock": BedrockProvider,
    "vertex": VertexProvider,
}


def build_providers(config: SluiceConfig, client: UpstreamClient) -> dict[str, Provider]:
    providers: dict[str, Provider] = {"fake": FakeProvider()}
    for name, cfg in config.providers.items():
        kind = provider_type(name, cfg)
        if kind == "fake":
            providers[name] = FakeProvider(name)
            continue
        assert kind is not None  # validated when the config loaded
        client.set_pool(name, PoolLimits(cfg.max_connections, cfg.pool_timeout_s))
        timeouts = Timeouts(
            connect=cfg.connect_timeout_s,
            first_byte=cfg.first_byte_timeout_s,
            read=cfg.read_timeout_s,
            total=cfg.total_timeout_s,
        )
        if kind in _CLOUD_TYPES:
            providers[name] = _CLOUD_TYPES[kind](name, cfg, client, timeouts)
            continue
        keys = [ProviderKey(k.name, k.value.get_secret_value(), k.weight) for k in cfg.keys]
        base_url = cfg.base_url or DEFAULT_BASE_URLS.get(name) or DEFAULT_BASE_URLS[kind]
        providers[name] = _HTTP_TYPES[kind](name, base_url, keys, client, timeouts, cfg.headers)
    return providers
