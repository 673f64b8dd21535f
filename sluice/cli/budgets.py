"""`sluice budgets ...` and `sluice config events`: live budget changes against the store."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from decimal import Decimal

import orjson

from sluice.admin.service import record_changes, without_hashes
from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.core.windows import window_at
from sluice.governance.config_sync import body_of, parse_object
from sluice.governance.limits import PICO_PER_DOLLAR, rules_from
from sluice.settings import AuditConfig, BudgetConfig
from sluice.storage.records import ConfigObject


def actor() -> str:
    return f"cli:{getpass.getuser()}"


async def set_budget(url: str, budget: BudgetConfig, audit: AuditConfig) -> str:
    store = open_store(url)
    try:
        await store.migrate()
        event = await store.put_object(ConfigObject("budget", budget.id, body_of(budget), actor()), actor())
        if event:
            await record_changes(AuditLog(audit, store), [event])
    finally:
        await store.close()
    return "unchanged" if event is None else f"{event.action}d budget {budget.id}"


async def delete_budget(url: str, budget_id: str, audit: AuditConfig) -> bool:
    store = open_store(url)
    try:
        await store.migrate()
        event = await store.delete_object("budget", budget_id, actor())
        if event:
            await record_changes(AuditLog(audit, store), [event])
        return event is not None
    finally:
        await store.close()


async def listing(url: str) -> list[str]:
    store = open_store(url)
    lines = [f"{'ID':28} {'ATTACHED TO':30} {'LIMIT':>12} {'WINDOW':16} {'SPENT IN WINDOW':>16} RESETS"]
    try:
        await store.migrate()
        now = datetime.now(UTC)
        for obj in await store.list_objects():
            if obj.kind != "budget":
                continue
            budget = parse_object(obj)
            assert isinstance(budget, BudgetConfig)
            [rule] = rules_from([budget], [])
            assert rule.duration is not None
            anchor = datetime.fromtimestamp(await store.first_seen(f"anchor:{rule.id}", int(now.timestamp())), UTC)
            window = window_at(now, rule.duration, calendar_aligned=rule.calendar_aligned, anchor=anchor)
            spent, _, _ = await store.spend_totals(rule.scope, rule.scope_id, window.start, window.end)
            kind, ident = budget.scope
            aligned = " (calendar)" if budget.calendar_aligned else ""
            lines.append(
                f"{budget.id:28} {kind + ' ' + ident:30} {'$' + str(budget.max_limit):>12} "
                f"{budget.reset_duration + aligned:16} {'$' + str(round(Decimal(spent) / PICO_PER_DOLLAR, 4)):>16} "
                f"{window.end.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            )
    finally:
        await store.close()
    return lines


async def events(url: str, limit: int) -> list[str]:
    store = open_store(url)
    try:
        await store.migrate()
        found = await store.config_events(limit)
    finally:
        await store.close()
    return [
        orjson.dumps(
            {
                "ts": e.ts.isoformat(),
                "actor": e.actor,
                "kind": e.kind,
                "id": e.object_id,
                "action": e.action,
                "before": without_hashes(e.before),
                "after": without_hashes(e.after),
            }
        ).decode()
        for e in reversed(found)
    ]
