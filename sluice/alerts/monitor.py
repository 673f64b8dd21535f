"""Checks budgets, soft budgets, spend rates and circuit breakers every `alerts.interval_s`, off
the request path, and fires each alert once: a durable claim in the store names it (budget,
window, threshold), so a restart or another replica finds it claimed and stays quiet. A fired
alert is an `alert` record in the audit log, from which each sink's runner delivers it.

A claim is pending until its alert is in the audit log, then recorded. A pending claim carries
the time it was made (or last renewed by its process, which renews it while the audit log is
unreachable): one left pending longer than `STALE` belongs to a process that died between the
claim and the record, and the next check that raises the same alert, in any process, takes it
over (compare-and-set in the store) and records the alert. So a crash loses no alert."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.alerts.delivery import AlertRunner
from sluice.audit.log import AuditLog
from sluice.core.clock import SYSTEM_CLOCK, Clock
from sluice.core.tasks import cancel, spawn
from sluice.core.windows import Duration, window_at
from sluice.governance.limits import Limits
from sluice.governance.utilisation import budget_states
from sluice.routing.resilience import CircuitBreakers
from sluice.settings import AlertsConfig, AuditExportConfig, SpendRateConfig
from sluice.storage.ports import Store
from sluice.storage.records import RequestQuery
from sluice.upstream.client import UpstreamClient

log = logging.getLogger("sluice.alerts")
PICO_PER_DOLLAR = 10**12
ACTOR = "sluice:alerts"
# A claim's value in the store: RECORDED once its alert is in the audit log; negative while it is
# pending: -(claim time in ms << 12 | 12 random bits), so two processes never make the same one.
# Positive values other than RECORDED are claims made before claims had states: recorded.
RECORDED = 1
STALE_S = 60.0  # at least: a pending claim older than this (and 6 checks) is an orphan


def _pending(now_ms: int) -> int:
    return -((now_ms << 12) | secrets.randbits(12))


def _claimed_ms(value: int) -> int | None:
    """When a pending claim was made or renewed; None for a recorded one."""
    return (-value) >> 12 if value < 0 else None


class _Claim:
    """An alert this process claimed and has not recorded yet."""

    __slots__ = ("alert", "name", "token")

    def __init__(self, alert: dict[str, Any], name: str, token: int) -> None:
        self.alert, self.name, self.token = alert, name, token


def _pct(value: float) -> str:
    return f"{value:g}%"


class AlertMonitor:
    def __init__(
        self,
        config: AlertsConfig,
        audit: AuditLog,
        store: Store,
        limits: Limits,
        breakers: Callable[[], CircuitBreakers],
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self._audit = audit
        self._store = store
        self._limits = limits
        self._breakers = breakers
        self._clock = clock
        self._claimed: set[str] = set()  # ids this process claimed or saw recorded (saves a store read per check)
        self._stale_ms = int(max(STALE_S, 6 * config.interval_s) * 1000)
        self._open: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self.fired: list[dict[str, Any]] = []
        # Claimed but not yet in the audit log (it was unreachable): retried at every check.
        self._pending: list[_Claim] = []
        self._unmarked: list[_Claim] = []  # recorded, but the claim not yet marked so

    def start(self) -> None:
        self._task = spawn(self._run(), name="alerts-monitor")

    async def stop(self) -> None:
        await cancel(self._task)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("alert check failed")
            await asyncio.sleep(self.config.interval_s)

    async def check(self) -> list[dict[str, Any]]:
        """One pass over every configured alert; returns the alerts it fired."""
        fired: list[dict[str, Any]] = []
        await self._record_pending(fired)
        now = self._clock.now()
        await self._budgets(now, fired)
        await self._soft_budgets(now, fired)
        await self._spend_rates(now, fired)
        if self.config.provider_health:
            await self._providers(fired)
        return fired

    async def _budgets(self, now: datetime, fired: list[dict[str, Any]]) -> None:
        explicit = {b.budget_id: b.thresholds for b in self.config.budgets}
        if not explicit and not self.config.default_thresholds:
            return
        for state in await budget_states(self._limits):
            thresholds = explicit.get(state.rule.id, self.config.default_thresholds)
            rule = state.rule
            window = int(state.window_start.timestamp()) if state.window_start else 0
            await self._thresholds(
                fired, "budget_threshold", rule.id, window, thresholds, state.spent_pico, rule.limit,
                scope=rule.scope, scope_id=rule.scope_id, soft=False,
                window_start=state.window_start.isoformat() if state.window_start else None,
                window_end=state.window_end.isoformat() if state.window_end else None,
                held_dollars=state.held_pico / PICO_PER_DOLLAR,
            )  # fmt: skip

    async def _soft_budgets(self, now: datetime, fired: list[dict[str, Any]]) -> None:
        for soft in self.config.soft_budgets:
            window = window_at(now, Duration.parse(soft.reset_duration), calendar_aligned=True)
            scope, scope_id = soft.scope
            spent, _, _ = await self._store.spend_totals(scope, scope_id, window.start, window.end)
            await self._thresholds(
                fired, "soft_budget_threshold", soft.id, window.key, soft.thresholds, spent,
                int(soft.max_limit * PICO_PER_DOLLAR), scope=scope, scope_id=scope_id, soft=True,
                window_start=window.start.isoformat(), window_end=window.end.isoformat(),
            )  # fmt: skip

    async def _thresholds(
        self,
        fired: list[dict[str, Any]],
        kind: str,
        budget: str,
        window: int,
        thresholds: list[float],
        spent: int,
        limit: int,
        **facts: Any,
    ) -> None:
        crossed = [t for t in thresholds if limit and spent * 100 >= t * limit]
        if not crossed:
            return
        top = crossed[-1]
        # Lower thresholds crossed in the same jump are claimed quietly: one alert says it all.
        for t in crossed[:-1]:
            await self._claim(f"{kind}:{budget}:{window}:{t:g}")
        pct = spent * 100 / limit
        what = "soft budget" if facts.get("soft") else "budget"
        summary = (
            f"{what} {budget!r} ({facts['scope'].replace('_', ' ')} {facts['scope_id']}) reached {_pct(top)}: "
            f"${spent / PICO_PER_DOLLAR:.4f} of ${limit / PICO_PER_DOLLAR:.4f} spent ({pct:.1f}%)"
        )
        severity = "critical" if top >= 100 else "warning"
        alert = await self.fire(
            f"{kind}:{budget}:{window}:{top:g}", kind, severity, summary, budget=budget, threshold_percent=top,
            spent_dollars=spent / PICO_PER_DOLLAR, limit_dollars=limit / PICO_PER_DOLLAR, **facts,
        )  # fmt: skip
        if alert is not None:
            fired.append(alert)

    async def _spend_rates(self, now: datetime, fired: list[dict[str, Any]]) -> None:
        hour = int(now.timestamp()) // 3600
        for rate in self.config.spend_rate:
            limit = int(rate.max_dollars_per_hour * PICO_PER_DOLLAR)
            for scope, scope_id, spent, requests in await self._rates(rate.scope, now, limit):
                alert = await self._spend_rate(rate, scope, scope_id, spent, requests, hour)
                if alert is not None:
                    fired.append(alert)

    async def _rates(self, of: tuple[str, str], now: datetime, limit: int) -> list[tuple[str, str, int, int]]:
        """(scope, id, spent, requests) over the last hour above `limit`: of one key, team or
        customer from the ledger, or of every key (`virtual_key_id: "*"`) from the request log's
        spend report, the top spenders first."""
        scope, scope_id = of
        if scope_id == "*":
            rows = await self._store.spend_report("key", RequestQuery(since=now - timedelta(hours=1), limit=100))
            above = [r for r in rows if r["group"] and int(r["cost_pico"]) > limit]
            return [("virtual_key", str(r["group"]), int(r["cost_pico"]), int(r["requests"])) for r in above]
        spent, _, requests = await self._store.spend_totals(
            scope, scope_id, now - timedelta(hours=1), now + timedelta(seconds=1)
        )
        return [(scope, scope_id, spent, requests)] if spent > limit else []

    async def _spend_rate(
        self, rate: SpendRateConfig, scope: str, scope_id: str, spent: int, requests: int, hour: int
    ) -> dict[str, Any] | None:
        summary = (
            f"{scope.replace('_', ' ')} {scope_id} spent ${spent / PICO_PER_DOLLAR:.4f} in the last hour "
            f"({requests} requests), above the ${rate.max_dollars_per_hour:g}/h of {rate.id!r}"
        )
        return await self.fire(
            f"spend_rate:{rate.id}:{scope_id}:{hour}", "spend_rate", "warning", summary, rule=rate.id,
            scope=scope, scope_id=scope_id, spent_dollars=spent / PICO_PER_DOLLAR, requests=requests,
            max_dollars_per_hour=rate.max_dollars_per_hour,
        )  # fmt: skip

    async def _providers(self, fired: list[dict[str, Any]]) -> None:
        states = self._breakers().snapshot(time.monotonic())
        now_open = {name for name, state in states.items() if state == "open"}
        for name in sorted(now_open - self._open):
            provider, _, key = name.partition("/")
            alert = await self.fire(
                f"provider_unhealthy:{name}:{int(self._clock.now().timestamp())}:{secrets.token_hex(4)}",
                "provider_unhealthy", "critical",
                f"provider {provider} key {key}: circuit breaker opened (requests skip the key for now)",
                provider=provider, provider_key=key,
            )  # fmt: skip
            if alert is not None:
                fired.append(alert)
        self._open = now_open

    def _now_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)

    async def _claim(self, alert_id: str) -> tuple[str, int] | None:
        """(store name, token) when this call holds the claim of `alert_id`: the first anywhere to
        claim it, or the one that took over a claim its process left pending and died."""
        if alert_id in self._claimed:
            return None
        # The store's names are short (100 characters): a budget id may not be.
        name = "alert:" + hashlib.sha256(alert_id.encode()).hexdigest()[:40]
        now = self._now_ms()
        token = _pending(now)
        try:
            stored = await self._store.first_seen(name, token)
        except Exception:  # another replica inserted it first (a unique-key race): read it next time
            return None
        if stored == token:
            self._claimed.add(alert_id)
            return name, token
        claimed = _claimed_ms(stored)
        if claimed is None:
            self._claimed.add(alert_id)  # recorded: quiet from now on
            return None
        if now - claimed < self._stale_ms or not await self._store.swap_meta(name, stored, token):
            return None  # another process is recording it (or took it over first)
        log.warning("alert %s was claimed but never recorded (its process died): recording it now", alert_id)
        self._claimed.add(alert_id)
        return name, token

    async def fire(self, alert_id: str, kind: str, severity: str, summary: str, **facts: Any) -> dict[str, Any] | None:
        """Raises one alert: `alert_id` names it once for every replica (a second call with the same id,
        here or elsewhere, sends nothing); it is recorded in the audit log, which the sinks deliver from.
        Returns the alert when this call recorded it."""
        claim = await self._claim(alert_id)
        if claim is None:
            return None
        alert = {
            "alert_id": alert_id,
            "type": kind,
            "severity": severity,
            "summary": summary,
            "fired_at": datetime.now(UTC).isoformat(),
            **facts,
        }
        self._pending.append(_Claim(alert, *claim))
        recorded: list[dict[str, Any]] = []
        await self._record_pending(recorded)
        return alert if any(a is alert for a in recorded) else None

    async def _record_pending(self, fired: list[dict[str, Any]]) -> None:
        """Records the claimed alerts in the audit log (the outbox), then marks their claims
        recorded; one that cannot be recorded now stays pending, its claim renewed, and is tried
        again at the next check, so a store outage loses none."""
        for claim in list(self._unmarked):
            if await self._mark(claim):
                self._unmarked.remove(claim)
        for claim in list(self._pending):
            try:
                if not await self._renew(claim):
                    self._pending.remove(claim)  # judged dead and taken over by another process
                    continue
                await self._audit.append("alert", ACTOR, claim.alert)
            except Exception:
                log.warning("alert %s could not be recorded yet; will retry", claim.alert["alert_id"], exc_info=True)
                return
            self._pending.remove(claim)
            if not await self._mark(claim):
                self._unmarked.append(claim)
            log.warning("alert: %s", claim.alert["summary"])
            self.fired.append(claim.alert)
            fired.append(claim.alert)

    async def _renew(self, claim: _Claim) -> bool:
        """Keeps a claim this process still holds from looking orphaned; False when it lost it."""
        now = self._now_ms()
        made = _claimed_ms(claim.token)
        if made is not None and now - made < self._stale_ms // 4:
            return True  # fresh: no write
        token = _pending(now)
        if not await self._store.swap_meta(claim.name, claim.token, token):
            log.warning("alert %s: claim taken over by another process", claim.alert["alert_id"])
            return False
        claim.token = token
        return True

    async def _mark(self, claim: _Claim) -> bool:
        try:
            await self._store.swap_meta(claim.name, claim.token, RECORDED)
        except Exception:
            log.warning("alert %s recorded; its claim not marked yet", claim.alert["alert_id"], exc_info=True)
            return False
        return True


class Alerts:
    """The monitor and one outbox runner per sink."""

    def __init__(
        self,
        config: AlertsConfig,
        export: AuditExportConfig,
        audit: AuditLog,
        store: Store,
        client: UpstreamClient,
        limits: Limits,
        breakers: Callable[[], CircuitBreakers],
    ) -> None:
        self.config = config
        self.monitor = AlertMonitor(config, audit, store, limits, breakers)
        self.runners = [AlertRunner(sink, store, client, export) for sink in config.sinks]

    def start(self) -> None:
        if not self.config.enabled:
            return
        self.monitor.start()
        for runner in self.runners:
            runner.start()

    async def fire(self, alert_id: str, kind: str, severity: str, summary: str, **facts: Any) -> dict[str, Any] | None:
        """The one way any part of the gateway raises an alert (guardrails, sessions, the monitor)."""
        if not self.config.enabled:
            return None
        return await self.monitor.fire(alert_id, kind, severity, summary, **facts)

    async def stop(self) -> None:
        await self.monitor.stop()
        for runner in self.runners:
            await runner.stop()
