"""`sluice admin bootstrap` and `sluice admin token ...`: secrets shown once, stored hashed, and
accepted by the admin API's authenticators; CLI key changes are configuration events too."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from typer.testing import CliRunner

from sluice.app import open_store
from sluice.auth.admin_tokens import ApiTokenAuthenticator, BootstrapAuthenticator
from sluice.cli.main import app


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def secret_in(output: str) -> str:
    found = re.search(r"(sk-sluice-[A-Za-z0-9_-]+)", output)
    assert found, output
    return found.group(1)


def test_bootstrap_and_tokens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out = run("admin", "bootstrap", "--store", url)
    assert code == 0
    bootstrap = secret_in(out)
    assert run("admin", "bootstrap", "--store", url)[0] == 1  # set once
    code, out = run("admin", "bootstrap", "--replace", "--store", url)
    assert code == 0 and secret_in(out) != bootstrap
    replaced = secret_in(out)

    code, out = run("admin", "token", "create", "--id", "lead", "--role", "team-lead", "--team", "t1", "--store", url)
    assert code == 0
    token = secret_in(out)
    assert run("admin", "token", "create", "--id", "x", "--role", "boss", "--store", url)[0] == 2
    code, out = run("admin", "token", "list", "--store", url)
    assert "lead" in out and "team-lead" in out and token not in out

    async def check() -> None:
        store = open_store(url)
        try:
            await store.migrate()
            stored = str([o.body for o in await store.list_objects()])
            assert token not in stored and replaced not in stored  # hashes only
            boot = BootstrapAuthenticator(store, env={})
            assert await boot.authenticate({"authorization": f"Bearer {bootstrap}"}) is None  # replaced
            admin = await boot.authenticate({"authorization": f"Bearer {replaced}"})
            assert admin is not None and admin.roles == {"admin"}
            lead = await ApiTokenAuthenticator(store).authenticate({"authorization": f"Bearer {token}"})
            assert lead is not None and lead.roles == {"team-lead"} and lead.teams == {"t1"}
            events = await store.config_events(10)
            assert {e.kind for e in events} == {"admin_bootstrap", "admin_token"}
        finally:
            await store.close()

    asyncio.run(check())
    assert run("admin", "token", "revoke", "lead", "--store", url)[0] == 0
    assert run("admin", "token", "revoke", "lead", "--store", url)[0] == 1


def test_cli_key_changes_are_events(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert run("keys", "create", "--id", "vk-c", "--allow", "fake", "--store", url)[0] == 0
    assert run("keys", "create", "--id", "vk-c", "--allow", "fake", "--store", url)[0] != 0
    assert run("keys", "revoke", "vk-c", "--store", url)[0] == 0
    assert run("keys", "revoke", "vk-c", "--store", url)[0] == 1
    code, out = run("config", "events", "--store", url)
    assert code == 0 and '"action":"create"' in out and '"action":"revoke"' in out and '"actor":"cli:' in out
    assert "key_hash" not in out
