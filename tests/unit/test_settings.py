from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.settings import ConfigError, load_config, parse_config

# Verbatim from the foundation issue: the format platform teams already write.
ISSUE_KEYS_DOC = """
{"virtual_keys": [{"id": "vk-eng-junior", "name": "Junior Engineering Pool",
   "provider_configs": [{"provider": "anthropic", "weight": 1.0,
                         "allowed_models": ["claude-haiku-4-5-20251001"]}]},
  {"id": "vk-eng-senior", "name": "Senior Engineering Pool",
   "provider_configs": [{"provider": "anthropic", "weight": 0.6,
                         "allowed_models": ["claude-sonnet-4-6", "claude-haiku-4-5-20251001"]},
                        {"provider": "bedrock", "weight": 0.4,
                         "allowed_models": ["bedrock/global.anthropic.claude-sonnet-4-6"]}]}]}
"""


def test_issue_virtual_key_document_loads_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(ISSUE_KEYS_DOC)
    cfg = load_config(path)
    senior = cfg.virtual_keys[1]
    assert senior.name == "Senior Engineering Pool"
    assert [(p.provider, p.weight) for p in senior.provider_configs] == [("anthropic", 0.6), ("bedrock", 0.4)]
    assert senior.provider_configs[1].allowed_models == ["bedrock/global.anthropic.claude-sonnet-4-6"]
    # Loads, but says what will not work until the providers are configured.
    assert any("'bedrock' is not configured" in w for w in cfg.warnings())


def test_providers_document_with_env_refs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("ALICE_KEY", "bf-vk-developer-alice-001")
    cfg = parse_config(
        {
            "providers": {
                "anthropic": {
                    "base_url": "http://127.0.0.1:9",
                    "keys": [{"name": "main", "value": "env.ANTHROPIC_API_KEY", "weight": 1}],
                },
                "openai": {"base_url": "http://127.0.0.1:9/v1", "keys": []},
            },
            "virtual_keys": [
                {
                    "id": "vk-alice",
                    "value": "env.ALICE_KEY",
                    "team_id": "t1",
                    "customer_id": "c1",
                    "is_active": True,
                    "expires_at": "2030-01-01T00:00:00Z",
                    "provider_configs": [{"provider": "anthropic"}],
                }
            ],
        }
    )
    assert cfg.providers["anthropic"].keys[0].value.get_secret_value() == "sk-ant-secret"
    assert cfg.virtual_keys[0].value is not None
    assert cfg.virtual_keys[0].value.get_secret_value() == "bf-vk-developer-alice-001"
    # Secrets never show in a repr (and so never in a log line).
    assert "sk-ant-secret" not in repr(cfg)
    assert "bf-vk-developer-alice-001" not in repr(cfg)


def test_provider_key_with_unset_env_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = parse_config({"providers": {"openai": {"keys": [{"name": "k", "value": "env.OPENAI_API_KEY"}]}}})
    assert cfg.providers["openai"].keys == []
    assert any("'openai' has no keys" in w for w in cfg.warnings())


def test_unset_env_elsewhere_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"virtual_keys\[0\]\.value needs environment variable NOPE_KEY"):
        parse_config({"virtual_keys": [{"id": "vk", "value": "env.NOPE_KEY"}]})


def test_unknown_top_level_key_is_an_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"virtual_keys": [], "virtual_key": []})
    assert "virtual_key: unknown key" in str(err.value)


def test_unknown_nested_key_names_its_path() -> None:
    with pytest.raises(ConfigError, match=r"virtual_keys\.0\.provider_config: unknown key"):
        parse_config({"virtual_keys": [{"id": "vk", "provider_config": []}]})


def test_duplicate_key_ids_rejected() -> None:
    with pytest.raises(ConfigError, match="appears twice"):
        parse_config({"virtual_keys": [{"id": "a"}, {"id": "a"}]})


def test_vendor_and_compatible_providers() -> None:
    cfg = parse_config({"providers": {"groq": {}, "local": {"type": "openai_compatible", "base_url": "http://x/v1"}}})
    assert set(cfg.providers) == {"groq", "local"}
    with pytest.raises(ConfigError, match="needs a base_url"):
        parse_config({"providers": {"local": {"type": "openai_compatible"}}})
    with pytest.raises(ConfigError, match="unknown provider"):
        parse_config({"providers": {"mystery": {}}})


def test_yaml_and_json_files(tmp_path: Path) -> None:
    y = tmp_path / "c.yaml"
    y.write_text("virtual_keys:\n  - id: vk-a\n    provider_configs: [{provider: fake}]\n")
    j = tmp_path / "c.json"
    j.write_text(json.dumps({"virtual_keys": [{"id": "vk-a"}]}))
    assert load_config(y).virtual_keys[0].id == "vk-a"
    assert load_config(j).virtual_keys[0].id == "vk-a"
    bad = tmp_path / "bad.yaml"
    bad.write_text("virtual_keys: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_demo_config_is_valid() -> None:
    cfg = load_config(Path(__file__).parents[2] / "examples" / "demo.yaml")
    assert {vk.id for vk in cfg.virtual_keys} >= {"vk-demo", "vk-demo-junior"}


def test_pricing_overrides_parse() -> None:
    price = {"input_cost_per_mtok": 0.5, "output_cost_per_mtok": 1.5}
    cfg = parse_config({"pricing": {"overrides": {"my-vllm-model": price}}})
    assert str(cfg.pricing.overrides["my-vllm-model"].input_cost_per_mtok) == "0.5"
    assert cfg.pricing.unpriced == "refuse"  # the default: no silent $0
    # The earlier flat shape still reads as overrides.
    flat = parse_config({"pricing": {"my-vllm-model": price}})
    assert flat.pricing.overrides == cfg.pricing.overrides


def test_pricing_unpriced_policy_is_validated() -> None:
    assert parse_config({"pricing": {"unpriced": "allow"}}).pricing.unpriced == "allow"
    default = parse_config({"pricing": {"unpriced": {"input_cost_per_mtok": 3, "output_cost_per_mtok": 15}}})
    assert not isinstance(default.pricing.unpriced, str)
    assert str(default.pricing.unpriced.output_cost_per_mtok) == "15"
    for bad in ("maybe", 0, {"input_cost_per_mtok": -1}, {"input_cost_per_mtok": "NaN"}, {"bogus": 1}):
        with pytest.raises(ConfigError, match=r"pricing\.unpriced"):
            parse_config({"pricing": {"unpriced": bad}})
    with pytest.raises(ConfigError, match=r"overrides\.m\.input_cost_per_mtok"):
        parse_config({"pricing": {"overrides": {"m": {"input_cost_per_mtok": -1}}}})


def test_guardrails_are_off_without_a_section_and_on_with_an_empty_one() -> None:
    assert parse_config({}).guardrails.enabled is False
    on = parse_config({"guardrails": {}}).guardrails
    assert on.enabled is True and on.default == "standard"
    assert parse_config({"guardrails": {"enabled": False}}).guardrails.enabled is False
