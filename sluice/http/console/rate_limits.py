"""Rate-limit use beside the budget bars: every token, request and concurrency limit that applies
to a key (its own, its team's, its customer's, its access profile's), with what is used in the
current window, what requests in flight hold, the limit and when the window resets. Read through
`Limits.rules_for` and `Limits.current`, the limits' one public read of their counters."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sluice.storage.records import VirtualKey

log = logging.getLogger("sluice.console")
UNITS = {"tokens": "tokens", "requests": "requests", "concurrent": "in flight"}


@dataclass(frozen=True, slots=True)
class RateUse:
    id: str
    measure: str  # tokens | requests | concurrent
    scope: str  # virtual_key | team | customer
    scope_id: str
    used: int  # settled in the current window (0 for concurrency: it has no window)
    held: int  # reserved by requests in flight
    limit: int
    period: str  # "per 1m", "at once"
    resets: datetime | None

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used - self.held)

    @property
    def unit(self) -> str:
        return UNITS[self.measure]

    @property
    def shared(self) -> bool:
        """A team's or customer's limit: other keys use it too."""
        return self.scope != "virtual_key"


async def rate_use(limits: Any, keys: list[VirtualKey]) -> dict[str, list[RateUse]]:
    """Each key's rate-limit use, in one counter read for the whole page (a rule shared by
    several keys, a team's, is read once). A counter store that cannot be read shows no rows
    rather than failing the page."""
    if limits is None or not keys:
        return {}
    per_key = {k.id: [r for r in limits.rules_for(k) if r.measure != "cost"] for k in keys}
    rules = list(dict.fromkeys(r for found in per_key.values() for r in found))
    if not rules:
        return {}
    try:
        read = await limits.current(rules)
    except Exception:  # the counters down must not take the page with them
        log.debug("reading rate-limit counters failed", exc_info=True)
        return {}
    by_rule = {}
    for rule, window, state in read:
        by_rule[rule] = RateUse(
            rule.id,
            rule.measure,
            rule.scope,
            rule.scope_id,
            max(0, int(state.used)),
            max(0, int(state.reserved)),
            rule.limit,
            f"per {rule.duration}" if rule.duration else "at once",
            window.end if window is not None else None,
        )
    return {key_id: [by_rule[r] for r in found if r in by_rule] for key_id, found in per_key.items()}
