from __future__ import annotations

import random
from collections import Counter

import pytest

from sluice.core.errors import ErrorKind, SluiceError
from sluice.governance.allowlist import allowed_candidates, listed_models
from sluice.routing.weighted import choose
from sluice.storage.records import ProviderGrant, VirtualKey

SENIOR = VirtualKey(
    id="vk-eng-senior",
    name="Senior",
    key_hash="x",
    key_hint="x",
    grants=(
        ProviderGrant("anthropic", 0.6, ("claude-sonnet-4-6", "claude-haiku-4-5-20251001")),
        ProviderGrant("bedrock", 0.4, ("bedrock/global.anthropic.claude-sonnet-4-6",)),
        ProviderGrant("fake", 1.0, ()),
    ),
)


def serves(provider: str, model: str) -> bool:
    return provider == "fake" or (provider == "anthropic" and model.startswith("claude"))


def test_bare_model_matches_explicit_and_wildcard_grants() -> None:
    found = allowed_candidates(SENIOR, "claude-sonnet-4-6", serves)
    assert [(c.provider, c.model) for c in found] == [("anthropic", "claude-sonnet-4-6"), ("fake", "claude-sonnet-4-6")]


def test_prefixed_model_targets_one_provider() -> None:
    found = allowed_candidates(SENIOR, "bedrock/global.anthropic.claude-sonnet-4-6", serves)
    assert [(c.provider, c.model) for c in found] == [("bedrock", "global.anthropic.claude-sonnet-4-6")]


def test_denied_model_names_key_and_allowed_models() -> None:
    junior = VirtualKey(
        "vk-eng-junior", "Junior", "x", "x", (ProviderGrant("anthropic", 1.0, ("claude-haiku-4-5-20251001",)),)
    )
    with pytest.raises(SluiceError) as err:
        allowed_candidates(junior, "claude-opus-4-1", serves)
    assert err.value.kind is ErrorKind.POLICY_MODEL_DENIED
    assert "claude-opus-4-1" in err.value.message and "vk-eng-junior" in err.value.message
    assert "claude-haiku-4-5-20251001" in err.value.message


def test_key_without_grants_may_use_nothing() -> None:
    with pytest.raises(SluiceError, match="no provider access"):
        allowed_candidates(VirtualKey("vk", "vk", "x", "x"), "claude-sonnet-4-6", serves)


def test_listed_models_are_the_explicit_ones() -> None:
    assert listed_models(SENIOR) == [
        "claude-sonnet-4-6",
        "claude-haiku-4-5-20251001",
        "bedrock/global.anthropic.claude-sonnet-4-6",
    ]


def test_weighted_choice_follows_weights() -> None:
    rng = random.Random(7)
    picks = Counter(choose(["a", "b"], lambda x: 0.6 if x == "a" else 0.4, rng) for _ in range(20_000))
    assert abs(picks["a"] / 20_000 - 0.6) < 0.02
    assert choose(["only"], lambda _: 0.0, rng) == "only"
    assert Counter(choose(["a", "b"], lambda x: 0.0 if x == "a" else 1.0, rng) for _ in range(100))["a"] == 0
