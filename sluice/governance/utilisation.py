"""How much of each budget's current window is spent and held, read from the limit counters for
metrics (a gauge per budget at scrape time) and budget alerts. Nothing here is on a request's path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sluice.governance.limits import LimitRule, Limits


@dataclass(frozen=True, slots=True)
class BudgetState:
    rule: LimitRule
    window_start: datetime | None
    window_end: datetime | None
    spent_pico: int  # settled
    held_pico: int  # reserved by requests in flight

    @property
    def fraction(self) -> float:
        return self.spent_pico / self.rule.limit if self.rule.limit else 0.0


async def budget_states(limits: Limits, rules: list[LimitRule] | None = None) -> list[BudgetState]:
    rules = limits.budget_rules() if rules is None else rules
    if not rules:
        return []
    return [
        BudgetState(
            rule,
            window.start if window else None,
            window.end if window else None,
            state.used,
            max(0, state.reserved),
        )
        for rule, window, state in await limits.current(rules)
    ]
