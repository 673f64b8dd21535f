"""A signed-in person's standing against their dollar budgets, as Claude Code reads it
(docs/design/claude-gateway-protocol.md, "Usage limits"; the reference's `GET /protocol`, stored
as tests/fixtures/claude_gateway/reference_protocol.md, "Usage-limit headers"):

- `anthropic-ratelimit-unified-*` headers on each answer, describing the fullest budget, so the
  client shows "You've used NN% of your usage credits" past 75% and 95%;
- the 429 `billing_error` once a budget is spent, without `representative-claim` and
  `overage-status` so the client prints our message as it is;
- `GET /api/oauth/usage`: the same budget in cents for `/usage` and the status line.

The budgets are the person's key's dollar rules (their access profile's per-person copies, their
team's and customer's), read through `Limits.current`: the same counters admission uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.core.errors import SluiceError
from sluice.core.windows import Duration, Window
from sluice.governance.limits import Admission, LimitRule, Limits
from sluice.storage.ports import SpendLedger
from sluice.storage.records import BucketState, VirtualKey

PREFIX = "anthropic-ratelimit-unified-"
PICO_PER_CENT = 10**10
_POOLED = ("team", "customer")  # a budget the person shares with their group


@dataclass(frozen=True, slots=True)
class Standing:
    rule: LimitRule
    window: Window | None
    used_pico: int

    @property
    def fraction(self) -> float:
        return self.used_pico / self.rule.limit if self.rule.limit > 0 else 1.0

    @property
    def period(self) -> str:
        """The `overage-period`: daily, weekly or monthly (the client knows no other)."""
        return _period_of(str(self.rule.duration) if self.rule.duration else None)


def _period_of(duration: object) -> str:
    seconds = Duration.parse(duration).seconds if isinstance(duration, str) else None
    if seconds is not None and seconds <= 86400:
        return "daily"
    if seconds is not None and seconds <= 7 * 86400:
        return "weekly"
    return "monthly"


def standings(items: Iterable[tuple[LimitRule, Window | None, BucketState]]) -> list[Standing]:
    """The dollar budgets among a key's limits (tokens, requests and session caps are no cap the
    client has words for)."""
    return [
        Standing(rule, window, max(0, state.used))
        for rule, window, state in items
        if rule.measure == "cost" and rule.scope != "session"
    ]


def fullest(found: list[Standing]) -> Standing | None:
    return max(found, key=lambda s: s.fraction, default=None)


def _reset(window: Window | None) -> str | None:
    return str(int(window.end.timestamp())) if window is not None else None


def answer_headers(found: list[Standing]) -> dict[str, str]:
    """The headers of an allowed answer: none for a person with no dollar budget."""
    top = fullest(found)
    if top is None:
        return {}
    fraction = min(0.99, math.floor(top.fraction * 100) / 100)  # below 1 while requests pass
    threshold = "0.95" if top.fraction >= 0.95 else "0.75" if top.fraction >= 0.75 else None
    status = "allowed_warning" if threshold else "allowed"
    headers = {
        PREFIX + "status": status,
        PREFIX + "representative-claim": "overage",
        PREFIX + "overage-status": status,
        PREFIX + "overage-utilization": f"{fraction:.2f}",
    }
    if threshold:
        headers[PREFIX + "overage-surpassed-threshold"] = threshold
    reset = _reset(top.window)
    if reset is not None:
        headers[PREFIX + "reset"] = headers[PREFIX + "overage-reset"] = reset
    return headers


def admission_standings(admission: Admission) -> list[Standing]:
    """The budgets an admission reserved against, as they stood before this request."""
    pairs = zip(admission.items, admission.states, strict=True)
    return standings((rule, window, state) for (rule, _, window), state in pairs)


def refusal(err: SluiceError, now: datetime) -> tuple[dict[str, str], str]:
    """(headers, message) of the 429 `billing_error` for a spent budget (the caller adds the
    Anthropic envelope)."""
    details = err.details
    headers = {"x-should-retry": "false", PREFIX + "status": "rejected"}
    resets_at = details.get("resets_at")
    reset_text = ""
    if isinstance(resets_at, str):
        end = datetime.fromisoformat(resets_at)
        headers["retry-after"] = str(max(1, math.ceil((end - now).total_seconds())))
        headers[PREFIX + "reset"] = headers[PREFIX + "overage-reset"] = str(int(end.timestamp()))
        reset_text = f" · resets {end.astimezone(UTC):%b} {end.astimezone(UTC).day}"
    headers[PREFIX + "overage-utilization"] = "1"
    headers[PREFIX + "overage-surpassed-threshold"] = "1"
    pooled = details.get("scope") in _POOLED
    period = "monthly" if pooled else _period_of(details.get("duration"))
    headers[PREFIX + "overage-period"] = period
    headers[PREFIX + "overage-disabled-reason"] = "org_spend_cap_reached"
    if pooled:
        headers[PREFIX + "overage-scope"] = "group_pool"
    whose = "your group's" if pooled else "your"
    limit = details.get("limit")
    message = (
        f"Spend limit reached ({whose} budget {details.get('limit_id')}, {limit}){reset_text}. "
        "Ask your platform team for an increase."
    )
    return headers, message


def _cents(pico: int) -> int:
    return pico // PICO_PER_CENT


def _percent(s: Standing) -> int:
    return math.floor(s.fraction * 100)


def _iso(window: Window | None) -> str | None:
    if window is None:
        return None
    return window.end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def usage_document(limits: Limits, ledger: SpendLedger, key: VirtualKey, now: datetime) -> dict[str, Any]:
    """`GET /api/oauth/usage` for the bearer's own budgets."""
    found = standings(await limits.current(limits.rules_for(key)))
    top = fullest(found)
    if top is not None:
        rows = [
            {
                "kind": "spend",
                "group": s.period,
                "percent": _percent(s),
                "resets_at": _iso(s.window),
                "severity": "critical" if s.fraction >= 0.95 else "warning" if s.fraction >= 0.75 else "normal",
                "is_active": s is top,
            }
            for s in found
        ]
        extra = {
            "is_enabled": True,
            "monthly_limit": _cents(top.rule.limit),  # cents, whatever the period (the field's name is fixed)
            "used_credits": _cents(top.used_pico),
            "utilization": _percent(top),
            "currency": "USD",
        }
        return {"extra_usage": extra, "limits": rows}
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    week = day - timedelta(days=day.weekday())
    month = day.replace(day=1)
    end = now + timedelta(seconds=1)

    async def spent(start: datetime) -> int:
        cost, _, _ = await ledger.spend_totals("virtual_key", key.id, start, end)
        return _cents(cost)

    monthly, daily, weekly = await spent(month), await spent(day), await spent(week)
    return {
        "extra_usage": {
            "is_enabled": True,
            "monthly_limit": None,  # 0 would be a $0 cap
            "used_credits": monthly,
            "utilization": None,
            "currency": "USD",
            "daily": {"limit": None, "used_credits": daily, "utilization": None},
            "weekly": {"limit": None, "used_credits": weekly, "utilization": None},
        },
        "limits": [],
    }
