"""`sluice config plan | apply | export`: the round trip, deletions, atomicity and events."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sluice.app import open_store
from sluice.cli.main import app
from sluice.storage.backends.sql import SqlStore
from sluice.storage.records import ConfigObject

FILE: dict[str, Any] = {
    "server": {"port": 9999},  # sections plan does not cover are ignored
    "teams": [{"id": "team-a", "name": "A"}],
    "customers": [{"id": "acme"}],
    "budgets": [{"id": "cap-a", "team_id": "team-a", "max_limit": 50, "reset_duration": "1M"}],
    "rate_limits": [{"id": "rl", "team_id": "team-a", "request_max_limit": 10, "request_reset_duration": "1m"}],
    "providers": {
        "openai": {"base_url": "http://127.0.0.1:9/v1", "keys": [{"name": "env-key", "value": "env.OPENAI_API_KEY"}]},
        "anthropic": {"keys": [{"name": "plain", "value": "sk-ant-PLAIN-SECRET-123"}]},
        "fake": {},
    },
    "routing": {
        "aliases": [{"alias": "fast", "target": "fake/echo"}, {"alias": "fast", "target": "x", "team_id": "team-a"}],
        "rules": [{"id": "r1", "when": "time.hour < 8", "target": "fake/slow"}],
    },
    "mcp": {
        "servers": [{"name": "fs", "transport": "stdio", "command": "mcp-fs", "env": {"TOKEN": "env.FS_TOKEN"}}],
        "tool_groups": [{"name": "readers", "tools": ["fs/read"]}],
    },
    "access_profiles": [
        {
            "id": "developers",
            "groups": ["engineering"],
            "provider_configs": [{"provider": "fake"}],
            "budgets": [{"id": "monthly", "max_limit": 200, "reset_duration": "1M", "calendar_aligned": True}],
        }
    ],
}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def objects(url: str) -> list[tuple[str, str]]:
    async def fetch() -> list[tuple[str, str]]:
        store = open_store(url)
        try:
            await store.migrate()
            return [(o.kind, o.id) for o in await store.list_objects()]
        finally:
            await store.close()

    return asyncio.run(fetch())


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SLUICE_SECRETS_KEY", "passphrase for the tests")
    return f"sqlite:///{tmp_path / 'cfg.db'}"


def test_plan_apply_export_round_trip(tmp_path: Path, store_url: str) -> None:
    path = write(tmp_path / "sluice.yaml", FILE)
    code, out = run("config", "plan", str(path), "--store", store_url)
    assert code == 0, out
    assert "Plan: 15 to create, 0 to change, 0 to delete." in out
    assert "sk-ant-PLAIN" not in out and "value: (secret)" in out
    code, out = run("config", "apply", str(path), "--store", store_url)
    assert code == 0 and "Applied: 15 change(s) recorded." in out, out
    assert "No changes" in run("config", "plan", str(path), "--store", store_url)[1]  # plain secret: same value
    code, exported = run("config", "export", "--store", store_url)
    assert code == 0 and "sk-ant-PLAIN" not in exported and "env.OPENAI_API_KEY" in exported
    assert "enc:" not in exported and "(encrypted)" in exported  # not even the sealed value leaves the store
    again = tmp_path / "exported.yaml"
    again.write_text(exported)
    assert "No changes" in run("config", "plan", str(again), "--store", store_url)[1]


def test_changes_and_deletions(tmp_path: Path, store_url: str) -> None:
    run("config", "apply", str(write(tmp_path / "a.yaml", FILE)), "--store", store_url)
    changed = {**FILE, "teams": [{"id": "team-a", "name": "Team A"}], "customers": []}
    changed["routing"] = {"aliases": [{"alias": "fast", "target": "fake/echo"}]}
    path = write(tmp_path / "b.yaml", changed)
    code, out = run("config", "plan", str(path), "--store", store_url)
    assert code == 0
    assert "~ team team-a" in out and "name: A -> Team A" in out
    assert "- customer acme" in out and "- routing_rule r1" in out and "- alias team:team-a:fast" in out
    assert "Plan: 0 to create, 1 to change, 3 to delete." in out
    run("config", "apply", str(path), "--store", store_url)
    assert ("customer", "acme") not in objects(store_url) and ("team", "team-a") in objects(store_url)

    async def events() -> list[Any]:
        store = open_store(store_url)
        try:
            return await store.config_events(100)
        finally:
            await store.close()

    found = asyncio.run(events())
    assert len(found) == 19 and all(e.actor.startswith("cli:") and "apply b.yaml" in e.actor for e in found[:4])


def test_access_profiles_are_planned_users_and_groups_are_not(tmp_path: Path, store_url: str) -> None:
    """Users and groups are directory data SCIM owns: plan never deletes them, export leaves them out."""

    async def provision() -> None:
        store = open_store(store_url)
        try:
            await store.migrate()
            await store.put_object(ConfigObject("user", "u1", {"userName": "dave@example.com"}, "scim"), "scim")
            await store.put_object(ConfigObject("group", "g1", {"displayName": "engineering"}, "scim"), "scim")
        finally:
            await store.close()

    asyncio.run(provision())
    run("config", "apply", str(write(tmp_path / "a.yaml", FILE)), "--store", store_url)
    assert {("user", "u1"), ("group", "g1"), ("access_profile", "developers")} <= set(objects(store_url))
    code, exported = run("config", "export", "--store", store_url)
    assert code == 0, exported
    doc = yaml.safe_load(exported)
    assert doc["access_profiles"][0]["id"] == "developers"
    assert "dave@example.com" not in exported and "engineering" in exported  # the profile names the group
    assert not {"users", "groups", "user", "group"} & set(doc)
    changed = {**FILE, "access_profiles": [{**FILE["access_profiles"][0], "groups": ["platform"]}]}
    code, out = run("config", "plan", str(write(tmp_path / "b.yaml", changed)), "--store", store_url)
    assert code == 0 and "~ access_profile developers" in out, out
    assert "Plan: 0 to create, 1 to change, 0 to delete." in out
    empty = {k: v for k, v in FILE.items() if k != "access_profiles"}
    code, out = run("config", "plan", str(write(tmp_path / "c.yaml", empty)), "--store", store_url)
    assert code == 0 and "- access_profile developers" in out, out
    assert "Plan: 0 to create, 0 to change, 1 to delete." in out
    assert "- user" not in out and "- group" not in out


def test_an_invalid_file_applies_nothing(tmp_path: Path, store_url: str) -> None:
    bad = {**FILE, "budgets": [{"id": "b", "team_id": "team-a", "max_limit": -5, "reset_duration": "1d"}]}
    code, out = run("config", "apply", str(write(tmp_path / "bad.yaml", bad)), "--store", store_url)
    assert code == 2 and "budgets[0].max_limit" in out and "nothing applied" in out
    assert objects(store_url) == []


def test_apply_is_one_transaction(tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = SqlStore._put
    calls = 0

    async def failing_put(self: SqlStore, conn: Any, obj: Any, actor: str, now: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("disk full")
        return await original(self, conn, obj, actor, now)

    monkeypatch.setattr(SqlStore, "_put", failing_put)
    result = CliRunner().invoke(app, ["config", "apply", str(write(tmp_path / "a.yaml", FILE)), "--store", store_url])
    assert isinstance(result.exception, RuntimeError)
    monkeypatch.setattr(SqlStore, "_put", original)
    assert objects(store_url) == []  # the four before the failure were rolled back


def test_plain_secret_without_a_secrets_key_is_refused(
    tmp_path: Path, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLUICE_SECRETS_KEY")
    code, out = run("config", "apply", str(write(tmp_path / "a.yaml", FILE)), "--store", store_url)
    assert code == 2 and "SLUICE_SECRETS_KEY" in out and "sk-ant-PLAIN" not in out
    assert objects(store_url) == []
