"""Which of a key's provider grants allow a requested model (pure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sluice.core.errors import ErrorKind, SluiceError
from sluice.storage.records import ProviderGrant, VirtualKey


@dataclass(frozen=True, slots=True)
class Candidate:
    provider: str
    model: str  # the provider's own model name, without the `provider/` prefix
    weight: float


def _is_wildcard(grant: ProviderGrant) -> bool:
    return not grant.allowed_models or "*" in grant.allowed_models


def _allows(grant: ProviderGrant, model: str, serves: Callable[[str, str], bool]) -> bool:
    if model in grant.allowed_models or f"{grant.provider}/{model}" in grant.allowed_models:
        return True
    return _is_wildcard(grant) and serves(grant.provider, model)


def allowed_candidates(key: VirtualKey, requested: str, serves: Callable[[str, str], bool]) -> list[Candidate]:
    """Candidates for `requested`, which is `provider/model` or a bare model name.

    Raises a policy denial when no grant of the key allows the model: this happens before any
    provider is contacted."""
    prefix, _, rest = requested.partition("/")
    explicit = [g for g in key.grants if rest and g.provider == prefix]
    if explicit:
        found = [Candidate(g.provider, rest, g.weight) for g in explicit if _allows(g, rest, serves)]
    else:
        found = [Candidate(g.provider, requested, g.weight) for g in key.grants if _allows(g, requested, serves)]
    if not found:
        raise SluiceError(
            ErrorKind.POLICY_MODEL_DENIED,
            f"Model '{requested}' is not allowed for virtual key '{key.id}'. {describe_allowed(key)}",
            details={"model": requested},
        )
    return found


def describe_allowed(key: VirtualKey) -> str:
    if not key.grants:
        return "This key has no provider access configured."
    parts = []
    for g in key.grants:
        models = "any model" if _is_wildcard(g) else ", ".join(g.allowed_models)
        parts.append(f"{g.provider}: {models}")
    return "Allowed: " + "; ".join(parts) + "."


def listed_models(key: VirtualKey) -> list[str]:
    """Explicitly allowed model names for `GET /v1/models`."""
    seen: dict[str, None] = {}
    for g in key.grants:
        for m in g.allowed_models:
            if m != "*":
                seen[m] = None
    return list(seen)
