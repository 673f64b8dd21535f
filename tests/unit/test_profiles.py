from __future__ import annotations

from pathlib import Path

from sluice.app import open_store
from sluice.governance.keys import KeyCache, hash_secret, hint_of
from sluice.governance.profiles import ProfileBook, derive, profile_for_groups
from sluice.settings import AccessProfileConfig
from sluice.storage.records import ConfigObject, ProviderGrant, VirtualKey

DEV = AccessProfileConfig.model_validate(
    {
        "id": "dev",
        "groups": ["Engineering"],
        "team_id": "team-eng",
        "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}],
        "fallbacks": ["claude-haiku-4-5"],
        "mcp": {"tool_groups": ["readonly"]},
    }
)
LEAD = AccessProfileConfig.model_validate({"id": "lead", "groups": ["leads"], "priority": 5})


def _key(secret: str = "sk-sluice-p", profile: str | None = "dev") -> VirtualKey:
    grants = (ProviderGrant("openai"),)
    return VirtualKey("vk-1", "K", hash_secret(secret), hint_of(secret), grants=grants, profile_id=profile)


def test_a_derived_key_takes_everything_from_its_profile() -> None:
    key = derive(_key(), DEV)
    assert [g.provider for g in key.grants] == ["anthropic"] and key.grants[0].allowed_models == ("claude-haiku-4-5",)
    assert key.mcp_tool_groups == ("readonly",) and key.fallbacks == ("claude-haiku-4-5",) and key.team_id == "team-eng"
    assert derive(_key(profile=None), DEV).grants == (ProviderGrant("openai"),)  # not derived: unchanged
    assert derive(_key(), None).grants == ()  # its profile is gone: nothing allowed (fail closed)


def test_the_matching_profile_of_highest_priority_wins() -> None:
    assert profile_for_groups([DEV, LEAD], ["engineering", "Leads"]) == "lead"
    assert profile_for_groups([DEV, LEAD], ["Engineering"]) == "dev"
    assert profile_for_groups([DEV, LEAD], ["sales"], "dev") == "dev"
    assert profile_for_groups([DEV, LEAD], ["sales"]) is None


async def test_the_key_cache_rebuilds_derived_keys_when_a_profile_changes(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    await store.migrate()
    await store.put_object(ConfigObject("access_profile", "dev", DEV.model_dump(mode="json"), "config"), "t")
    await store.create_key(_key("sk-sluice-derived"))
    profiles = ProfileBook(store, refresh_interval=0.05)
    cache = KeyCache(store, profiles=profiles, refresh_interval=0.05)
    await profiles.start()
    await cache.start()
    try:
        assert (await cache.authenticate("sk-sluice-derived")).grants[0].provider == "anthropic"
        changed = {**DEV.model_dump(mode="json"), "provider_configs": [{"provider": "gemini"}]}
        await store.put_object(ConfigObject("access_profile", "dev", changed, "api"), "admin")
        await profiles.reload()
        assert (await cache.authenticate("sk-sluice-derived")).grants[0].provider == "gemini"
    finally:
        await cache.stop()
        await profiles.stop()
        await store.close()


def test_config_warns_about_unknown_profiles_and_providers() -> None:
    from sluice.settings import parse_config

    config = parse_config(
        {
            "access_profiles": [{"id": "dev", "provider_configs": [{"provider": "nowhere"}]}],
            "auth": {"default_profile": "missing", "scim": {"token_sha256": ["a" * 64]}},
        }
    )
    warnings = config.warnings()
    assert any("default_profile 'missing'" in w for w in warnings)
    assert any("provider 'nowhere'" in w for w in warnings)
