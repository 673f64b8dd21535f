"""Budget bars: each budget's current window, what is spent in it (the durable ledger), what
requests in flight hold (the shared counters, when they can be read) and when it resets."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from sluice.core.windows import Duration, Window, window_at
from sluice.governance.profiles import profile_limits
from sluice.settings import BudgetConfig
from sluice.storage.records import ConfigObject, VirtualKey

log = logging.getLogger("sluice.console")
PICO = Decimal(10**12)


@dataclass(frozen=True, slots=True)
class BudgetState:
    id: str
    scope: str  # virtual_key | team | customer
    scope_id: str
    limit: Decimal  # dollars per window
    reset_duration: str
    window: Window
    spent: Decimal
    held: Decimal
    body: dict[str, Any]

    @property
    def left(self) -> Decimal:
        return max(Decimal(0), self.limit - self.spent - self.held)

    @property
    def fraction(self) -> float:
        return float((self.spent + self.held) / self.limit) if self.limit else 0.0


def parse(obj: ConfigObject) -> BudgetConfig | None:
    try:
        return BudgetConfig.model_validate({k: v for k, v in obj.body.items() if k in BudgetConfig.model_fields})
    except ValidationError:
        return None


async def states(
    services: Any, queries: Any, budgets: list[ConfigObject], now: datetime | None = None
) -> list[BudgetState]:
    now = now or datetime.now(UTC)
    parsed = [(o, b) for o in budgets if (b := parse(o)) is not None]
    rolling = [o.id for o, b in parsed if not b.calendar_aligned]
    anchors = await queries.anchors([*rolling, *{_template(i) for i in rolling if "@" in i}])
    windows = [
        window_at(
            now,
            Duration.parse(b.reset_duration),
            calendar_aligned=b.calendar_aligned,
            anchor=anchors.get(o.id) or anchors.get(_template(o.id)),
        )
        for o, b in parsed
    ]
    # One grouped ledger query per (scope kind, window) rather than one per budget.
    groups: dict[tuple[str, Window], set[str]] = {}
    for (_, budget), window in zip(parsed, windows, strict=True):
        groups.setdefault((budget.scope[0], window), set()).add(budget.scope[1])
    spent: dict[tuple[str, Window, str], int] = {}
    for (scope, window), ids in groups.items():
        for scope_id, pico in (await queries.spent_many(scope, sorted(ids), window.start, window.end)).items():
            spent[scope, window, scope_id] = pico
    held_all = await _held(services, [(o.id, w) for (o, _), w in zip(parsed, windows, strict=True)])
    found: list[BudgetState] = []
    for (obj, budget), window, pico_held in zip(parsed, windows, held_all, strict=True):
        scope, scope_id = budget.scope
        used = Decimal(spent.get((scope, window, scope_id), 0)) / PICO
        held = Decimal(pico_held) / PICO
        found.append(
            BudgetState(obj.id, scope, scope_id, budget.max_limit, budget.reset_duration, window, used, held, obj.body)
        )
    return found


def _template(rule_id: str) -> str:
    """A profile budget's windows start when the profile's rule appeared, for all its keys: the
    limits anchor `<profile>/<budget>@` (sluice/governance/limits.py)."""
    return rule_id[: rule_id.rindex("@") + 1] if "@" in rule_id else rule_id


def derived(profiles: dict[str, Any], keys: list[VirtualKey]) -> list[ConfigObject]:
    """The budgets each key has from its access profile (per key: its own counters), as the
    limits derive them; marked with the profile so no form offers to change them here."""
    found: list[ConfigObject] = []
    for key in keys:
        profile = profiles.get(key.profile_id) if key.profile_id else None
        if profile is None:
            continue
        for b in profile_limits(profile, key.id)[0]:
            found.append(ConfigObject("budget", b.id, {**b.model_dump(mode="json"), "profile": profile.id}, "profile"))
    return found


async def _held(services: Any, budgets: list[tuple[str, Window]]) -> list[int]:
    """What live reservations hold on each budget (Limits.held, one counter read); a console that
    cannot read the counters shows nothing held rather than failing the page."""
    if not budgets:
        return []
    try:
        held: list[int] = await services.limits.held(budgets)
        return held
    except Exception:  # a counter store that is down must not take the page with it
        log.debug("reading held amounts failed", exc_info=True)
        return [0] * len(budgets)
