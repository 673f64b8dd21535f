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


def budget_rules(limits: Limits) -> list[LimitRule]:
    """The dollar budgets of keys, teams and customers as configured (not the per-key copies an
    access profile makes, which would be one series per key)."""
    # Limits keeps its rules by scope for the request path; reading them here saves a second copy.
    return [rule for rules in limits._by_scope.values() for rule in rules if rule.measure == "cost"]


async def budget_states(limits: Limits, rules: list[LimitRule] | None = None) -> list[BudgetState]:
    rules = budget_rules(limits) if rules is None else rules
    if not rules:
        return []
    now = limits._clock.now()
    items = [limits._bucket(rule, now) for rule in rules]
    await limits._seed(items)  # a window nobody used since the start reads from the ledger
    states = await limits._counters.peek([bucket for _, bucket, _ in items])
    out = []
    for (rule, _, window), state in zip(items, states, strict=True):
        out.append(
            BudgetState(
                rule,
                window.start if window else None,
                window.end if window else None,
                state.used,
                max(0, state.reserved),
            )
        )
    return out
