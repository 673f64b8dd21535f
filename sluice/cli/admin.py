"""`sluice config plan | apply | export` (configuration as code) and `sluice admin ...` (the
bootstrap admin token and admin API tokens), against the store."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import yaml

from sluice.admin.declarative import declared, export, plan, render
from sluice.admin.service import AdminService
from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.auth.admin_tokens import TOKEN_KIND, create_token, generate_token, list_tokens, set_bootstrap
from sluice.auth.principal import Role
from sluice.settings import AuditConfig
from sluice.storage.ports import Store


def actor() -> str:
    return f"cli:{getpass.getuser()}"


def read_file(path: Path) -> Any:
    """The file as written: `env.NAME` references stay references (a plan needs no secrets)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


async def _opened(url: str) -> Store:
    store = open_store(url)
    await store.migrate()
    return store


async def plan_file(url: str, path: Path) -> list[str]:
    store = await _opened(url)
    try:
        existing = await store.list_objects()
        doc = read_file(path)
        lines = render(plan(existing, declared(doc, existing, str(path))))
    finally:
        await store.close()
    keys = len(doc.get("virtual_keys") or []) if isinstance(doc, dict) else 0
    if keys:
        lines.append(
            f"({keys} virtual key(s) in the file are not planned: `sluice serve` seeds them; "
            "`sluice keys` and the API issue others.)"
        )
    return lines


async def apply_file(url: str, path: Path, audit: AuditConfig) -> tuple[list[str], int]:
    """Applies the file in one transaction; returns the plan shown and the events recorded."""
    store = await _opened(url)
    try:
        existing = await store.list_objects()
        changes = plan(existing, declared(read_file(path), existing, str(path)))
        if not changes:
            return render(changes), 0
        wanted = {(o.kind, o.id): o for o in declared(read_file(path), existing, str(path))}
        put = [wanted[c.kind, c.id] for c in changes if c.action != "delete"]
        delete = [(c.kind, c.id) for c in changes if c.action == "delete"]
        events = await AdminService(store, AuditLog(audit, store)).apply(put, delete, f"{actor()} (apply {path.name})")
        return render(changes), len(events)
    finally:
        await store.close()


async def export_store(url: str) -> str:
    store = await _opened(url)
    try:
        doc = export(await store.list_objects())
    finally:
        await store.close()
    header = "# Sluice configuration exported from the store; `sluice config plan` on it shows no change.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


async def bootstrap(url: str, replace: bool, audit: AuditConfig) -> str | None:
    """A new bootstrap admin token (returned once), or None when one is set and not replaced."""
    store = await _opened(url)
    try:
        secret = generate_token().replace("sk-sluice-admin-", "sk-sluice-bootstrap-")
        event = await set_bootstrap(store, secret, actor(), replace=replace)
        if event is None:
            return None
        await AdminService(store, AuditLog(audit, store)).recorded([event])
        return secret
    finally:
        await store.close()


async def token_create(
    url: str, token_id: str, name: str, roles: list[Role], teams: list[str], user: str | None, audit: AuditConfig
) -> str:
    store = await _opened(url)
    try:
        _, secret, event = await create_token(store, token_id, name, roles, teams, user, actor())
        await AdminService(store, AuditLog(audit, store)).recorded([event] if event else [])
        return secret
    finally:
        await store.close()


async def token_list(url: str) -> list[str]:
    store = await _opened(url)
    try:
        tokens = await list_tokens(store)
    finally:
        await store.close()
    lines = [f"{'ID':24} {'ROLES':28} {'TEAMS':20} {'USER':16} HINT"]
    for t in tokens:
        lines.append(f"{t.id:24} {','.join(t.roles):28} {','.join(t.teams) or '-':20} {t.user_id or '-':16} {t.hint}")
    return lines


async def token_revoke(url: str, token_id: str, audit: AuditConfig) -> bool:
    store = await _opened(url)
    try:
        event = await store.delete_object(TOKEN_KIND, token_id, actor())
        if event is None:
            return False
        await AdminService(store, AuditLog(audit, store)).recorded([event])
        return True
    finally:
        await store.close()
