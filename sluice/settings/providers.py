"""The `providers` section: provider types, vendors as data, credentials and what keys may use."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    SecretStr,
)

from sluice.settings.base import _Strict

ProviderType = Literal["anthropic", "openai", "openai_compatible", "gemini", "azure", "bedrock", "vertex", "fake"]
PROVIDER_TYPES = "anthropic, openai, openai_compatible, gemini, azure, bedrock, vertex, fake"
# Credential fields of the cloud providers that, like `keys`, may name an unset variable: the
# provider then loads without that credential and answers 503 until it is set.
CLOUD_CREDENTIAL_FIELDS = ("access_key_id", "secret_access_key", "session_token", "credentials")

# OpenAI-compatible vendors are data: a name and a default base URL.
OPENAI_COMPATIBLE_VENDORS: dict[str, str] = {
    "groq": "https://api.groq.com/openai/v1",
    "mistral": "https://api.mistral.ai/v1",
    "deepseek": "https://api.deepseek.com/v1",
    "xai": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together": "https://api.together.xyz/v1",
    "fireworks": "https://api.fireworks.ai/inference/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
}
DEFAULT_BASE_URLS: dict[str, str] = {
    "anthropic": "https://api.anthropic.com",
    "openai": "https://api.openai.com/v1",
    "gemini": "https://generativelanguage.googleapis.com",
    **OPENAI_COMPATIBLE_VENDORS,
}


class ProviderKeyConfig(_Strict):
    name: str
    value: SecretStr
    weight: float = Field(default=1.0, ge=0)


class ProviderConfig(_Strict):
    type: ProviderType | None = None
    base_url: str | None = None
    keys: list[ProviderKeyConfig] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    first_byte_timeout_s: float = Field(default=120.0, gt=0)  # until the first byte of the answer
    read_timeout_s: float = Field(default=300.0, gt=0)  # longest silence between two pieces of a stream
    total_timeout_s: float = Field(default=1800.0, gt=0)  # the whole exchange
    # The connection pool (docs/providers.md#connection-pool). At most this many exchanges with the
    # provider open at once (a stream holds its connection to the end); unset: no cap of the
    # gateway's own, the process's file-descriptor limit bounds it.
    max_connections: int | None = Field(default=None, ge=1)
    # How long a request waits for a free connection once the cap is reached before it is answered
    # 503 gateway_saturated (Retry-After). Not part of the first-byte timeout: a full pool is the
    # gateway's doing, so it never counts against the provider's circuit breaker.
    pool_timeout_s: float = Field(default=10.0, gt=0)
    # Cloud providers (docs/providers.md). The provider's own id for a model, by the name callers
    # use, so one model name can be split between e.g. `anthropic` and `bedrock`.
    models: dict[str, str] = Field(default_factory=dict)  # bedrock, vertex
    deployments: dict[str, str] = Field(default_factory=dict)  # azure: model -> deployment name
    api_version: str | None = None  # azure: a dated version for deployment URLs; unset or "v1": the v1 API
    auth: Literal["api_key", "bearer"] = "api_key"  # azure: `api-key` header, or an Entra ID bearer token
    region: str | None = None  # bedrock (us-east-1), vertex (us-east5, global)
    access_key_id: SecretStr | None = None  # bedrock SigV4 credentials
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    project: str | None = None  # vertex; defaults to the service account's project_id
    credentials: SecretStr | None = None  # vertex: service-account JSON, inline or a file path


class ProviderAccess(_Strict):
    provider: str
    weight: float = Field(default=1.0, ge=0)
    allowed_models: list[str] = Field(default_factory=list)


def provider_type(name: str, cfg: ProviderConfig) -> ProviderType | None:
    if cfg.type is not None:
        return cfg.type
    if name in ("anthropic", "openai", "gemini", "azure", "bedrock", "vertex", "fake"):
        return name  # type: ignore[return-value]
    if name in OPENAI_COMPATIBLE_VENDORS:
        return "openai_compatible"
    return None
