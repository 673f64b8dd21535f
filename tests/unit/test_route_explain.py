from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from typer.testing import CliRunner

from sluice.app import open_store, seed_virtual_keys
from sluice.cli.main import app
from sluice.settings import load_config


def test_route_explain_shows_rules_aliases_and_serving_providers(tmp_path: Path) -> None:
    config = {
        "store": {"url": f"sqlite:///{tmp_path / 's.db'}"},
        "providers": {"anthropic": {"keys": [{"name": "a", "value": "sk-a"}]}},
        "virtual_keys": [
            {
                "id": "vk-a",
                "value": "sk-sluice-x",
                "team_id": "team-a",
                "fallbacks": ["fake/echo"],
                "provider_configs": [{"provider": "anthropic"}, {"provider": "fake", "allowed_models": ["echo"]}],
            }
        ],
        "budgets": [{"id": "b", "virtual_key_id": "vk-a", "max_limit": 10, "reset_duration": "1d"}],
        "routing": {
            "aliases": [
                {"alias": "sonnet-model", "target": "claude-sonnet-4-6"},
                {"alias": "sonnet-model", "team_id": "team-a", "target": "claude-sonnet-4-5"},
            ],
            "rules": [
                {
                    "id": "prod-haiku",
                    "models": ["sonnet-model"],
                    "when": 'request.headers["x-env"] == "prod" && budget_used < 0.5',
                    "target": "claude-haiku-4-5",
                }
            ],
        },
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    runner = CliRunner()

    async def seed() -> None:  # the way `sluice serve` seeds the store
        store = open_store(config["store"]["url"])
        await store.migrate()
        await seed_virtual_keys(store, load_config(path))
        await store.close()

    asyncio.run(seed())
    plain = runner.invoke(app, ["route", "explain", "--config", str(path), "--key", "vk-a", "--model", "sonnet-model"])
    assert plain.exit_code == 0, plain.output
    assert "steps:      alias:sonnet-model" in plain.output  # the team's alias, not the global one
    assert "resolved:   claude-sonnet-4-5" in plain.output
    assert "anthropic/claude-sonnet-4-5 (weight 1)" in plain.output
    assert "fallback 1: fake/echo: fake/echo (weight 1)" in plain.output
    prod = runner.invoke(
        app,
        ["route", "explain", "--config", str(path), "--key", "vk-a", "--model", "sonnet-model", "-H", "x-env: prod"],
    )
    assert "state:      budget_used=0.0, tokens_used=0" in prod.output
    assert "steps:      rule:prod-haiku" in prod.output and "resolved:   claude-haiku-4-5" in prod.output
    denied = runner.invoke(app, ["route", "explain", "--config", str(path), "--key", "vk-a", "--model", "gpt-5"])
    assert "refused: Model 'gpt-5' is not allowed" in denied.output
