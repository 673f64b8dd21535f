"""Secrets in stored configuration objects: references kept, plain values sealed, never shown."""

from __future__ import annotations

import pytest

from sluice.admin.secrets import SecretError, describe, same_secret, seal, unseal


def test_references_and_sealed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_SECRETS_KEY", raising=False)
    assert seal("env.OPENAI_API_KEY") == "env.OPENAI_API_KEY"
    with pytest.raises(SecretError, match="SLUICE_SECRETS_KEY") as refused:
        seal("sk-plain-value")
    assert "sk-plain-value" not in str(refused.value)
    monkeypatch.setenv("SLUICE_SECRETS_KEY", "one passphrase")
    sealed = seal("sk-plain-value")
    assert sealed.startswith("enc:") and "sk-plain-value" not in sealed
    assert seal(sealed) == sealed  # sealing twice changes nothing
    assert unseal(sealed) == "sk-plain-value"
    assert same_secret(sealed, "sk-plain-value") and not same_secret(sealed, "other")
    assert describe(sealed) == "(encrypted)" and describe("env.X") == "env.X"
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert unseal("env.OPENAI_API_KEY") == "from-env"
    monkeypatch.setenv("SLUICE_SECRETS_KEY", "another passphrase")
    assert unseal(sealed) is None  # another key cannot read it
