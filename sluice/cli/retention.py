"""`sluice audit erase | retention`: erase one person's captured content, apply the retention
periods once (the gateway does it daily by itself when `retention` is configured)."""

from __future__ import annotations

import getpass

from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.audit.retention import Erased, Retention
from sluice.settings import SluiceConfig
from sluice.storage.backends.sql import SqlStore
from sluice.storage.backends.sql_retention import SqlRetention


def _retention(config: SluiceConfig, url: str) -> tuple[SqlStore, Retention]:
    store = open_store(url)
    assert isinstance(store, SqlStore)
    return store, Retention(config, store, SqlRetention(store), AuditLog(config.audit, store))


async def erase(
    config: SluiceConfig, url: str, user: str | None, key: str | None, end_user: str | None, reason: str
) -> Erased:
    store, retention = _retention(config, url)
    try:
        await store.migrate()
        actor = f"cli:{getpass.getuser()}"
        return await retention.erase_person(user=user, key=key, end_user=end_user, actor=actor, reason=reason)
    finally:
        await store.close()


async def run_once(config: SluiceConfig, url: str) -> dict[str, int]:
    store, retention = _retention(config, url)
    try:
        await store.migrate()
        return await retention.run_once(actor=f"cli:{getpass.getuser()}")
    finally:
        await store.close()
