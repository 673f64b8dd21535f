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
from sluice.settings import BudgetConfig
from sluice.storage.records import Bucket, ConfigObject

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
    anchors = await queries.anchors([o.id for o, b in parsed if not b.calendar_aligned])
    found: list[BudgetState] = []
    for obj, budget in parsed:
        window = window_at(
            now,
            Duration.parse(budget.reset_duration),
            calendar_aligned=budget.calendar_aligned,
            anchor=anchors.get(obj.id),
        )
        scope, scope_id = budget.scope
        spent = Decimal(await queries.spent(scope, scope_id, window.start, window.end)) / PICO
        held = Decimal(await _held(services, obj.id, window)) / PICO
        found.append(
            BudgetState(obj.id, scope, scope_id, budget.max_limit, budget.reset_duration, window, spent, held, obj.body)
        )
    return found


async def _held(services: Any, rule_id: str, window: Window) -> int:
    """What live reservations hold on the budget's counter (storage.records.Bucket's key format).
    The counters belong to the limits; a console that cannot read them shows nothing held."""
    counters = getattr(getattr(services, "limits", None), "_counters", None)
    if counters is None:
        return 0
    try:
        state = (await counters.peek([Bucket(f"{rule_id}:cost:{window.key}", 0, window.end.timestamp())]))[0]
        return max(0, int(state.reserved))
    except Exception:  # a counter store that is down must not take the page with it
        log.debug("reading held amounts failed", exc_info=True)
        return 0
