"""Which provider, which of its models and which of its keys an attempt goes to."""

from __future__ import annotations

import time

from sluice.core.errors import ErrorKind, SluiceError
from sluice.engine.shapes import Inbound
from sluice.governance.allowlist import Candidate, allowed_candidates
from sluice.providers.base import Provider, ProviderKey
from sluice.routing.resilience import CircuitBreakers
from sluice.routing.weighted import choose
from sluice.storage.records import VirtualKey
from sluice.translation import reaches

# Provider types that cannot work without a credential (cloud ones list theirs as keys).
_KEYED_TYPES = {"anthropic", "openai", "gemini", "azure", "bedrock", "vertex"}


def has_credentials(provider: Provider) -> bool:
    return bool(provider.keys) or provider.type not in _KEYED_TYPES


def plan(
    providers: dict[str, Provider],
    breakers: CircuitBreakers,
    key: VirtualKey,
    inbound: Inbound,
    model: str,
    tried_keys: set[str] | None = None,
) -> tuple[Provider, Candidate, ProviderKey | None]:
    """The provider (weighted among those the key may use for `model` and that can take the
    caller's format), its model name, and its key (weighted, away from keys this request already
    tried and from keys whose circuit breaker is open)."""

    def serves(name: str, model: str) -> bool:
        p = providers.get(name)
        return p is not None and p.serves(model)

    candidates = allowed_candidates(key, model, serves)
    configured = [c for c in candidates if c.provider in providers]
    if not configured:
        names = ", ".join(sorted({c.provider for c in candidates}))
        raise SluiceError(
            ErrorKind.GATEWAY_NOT_CONFIGURED,
            f"Model '{model}' is allowed through provider {names}, which is not configured in this gateway.",
        )
    reachable = [
        c for c in configured if reaches(providers[c.provider], c.model, inbound.wire, inbound.operation, inbound.doc)
    ]
    if not reachable:
        names = ", ".join(sorted({c.provider for c in configured}))
        raise SluiceError(
            ErrorKind.GATEWAY_UNSUPPORTED,
            f"Model '{model}' is served here by {names}, which cannot be reached through the "
            f"{inbound.wire.value} API. Call it through that provider's own API surface.",
        )
    # A provider that needs a credential and has none is skipped while another can serve.
    usable = [c for c in reachable if has_credentials(providers[c.provider])]
    if not usable:
        names = ", ".join(sorted({c.provider for c in reachable}))
        raise SluiceError(
            ErrorKind.GATEWAY_NOT_CONFIGURED,
            f"Provider {names} has no API key configured in the gateway. Ask your platform team to add one.",
        )
    chosen = choose(usable, lambda c: c.weight)
    provider = providers[chosen.provider]
    if not provider.keys:
        return provider, chosen, None
    now = time.monotonic()
    fresh = [k for k in provider.keys if k.name not in (tried_keys or ())] or list(provider.keys)
    closed = [k for k in fresh if breakers.allows(f"{provider.name}/{k.name}", now)]
    if not closed:
        raise SluiceError(
            ErrorKind.PROVIDER_UNREACHABLE,
            f"Provider '{provider.name}' is failing; its circuit breaker is open. Try again shortly.",
            retry_after=breakers.open_seconds,
        )
    return provider, chosen, choose(closed, lambda k: k.weight)
