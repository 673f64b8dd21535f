"""Checks budgets, soft budgets, spend rates and circuit breakers every `alerts.interval_s`, off
the request path, and fires each alert once: a durable claim in the store names it (budget,
window, threshold), so a restart or another replica finds it claimed and stays quiet. A fired
alert is an `alert` record in the audit log, from which each sink's runner delivers it.

A claim is pending until its alert is in the audit log, then recorded; it keeps the alert itself
(its facts: figures and hashes, never content) while pending. A pending claim carries the time it
was made (or last renewed by its process, which renews it while the audit log is unreachable):
one left pending longer than `alerts.claim_lease_s` (and 6 checks) belongs to a process that died
between the claim and the record. The takeover loop of every process looks for such claims (at
start, then every check interval) and raises them again, and so does the next check raising the
same alert: whoever wins the compare-and-set on the claim records it, once. The one taking over
first looks in the audit log after the claim for the dead process's record (it may have died
after the record, before marking the claim), so the alert is recorded once. So a crash loses no
alert, not even one raised only once (a guardrail's, a runaway session's, a provider's)."""

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
from sluice.storage.records import AlertClaim, RequestQuery
from sluice.upstream.client import UpstreamClient

log = logging.getLogger("sluice.alerts")
PICO_PER_DOLLAR = 10**12
ACTOR = "sluice:alerts"
PENDING, RECORDED = "pending", "recorded"
FOREVER = datetime.max.replace(tzinfo=UTC)  # an alert that can come again at any time (a budget without a window)
PRUNE_EVERY_S = 3600.0


def _token() -> int:
    """A claim's witness: a new one at every claim, renewal and takeover (two processes never
    make the same one)."""
    return secrets.randbits(62) + 1


def claim_key(alert_id: str) -> str:
    # Ids can be long (a budget id in it); the key is short and fixed.
    return hashlib.sha256(alert_id.encode()).hexdigest()[:40]


class _Claim:
    """An alert this process claimed and has not recorded yet; `look` when it took the claim over
    (the dead claimer may have recorded it after `audit_after`)."""

    __slots__ = ("alert", "audit_after", "look", "name", "renewed_ms", "token")

    def __init__(
        self, alert: dict[str, Any], name: str, token: int, at_ms: int, audit_after: int, *, look: bool = False
    ) -> None:
        self.alert, self.name, self.token, self.renewed_ms = alert, name, token, at_ms
        self.audit_after, self.look = audit_after, look


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
        self._stale_ms = int(max(config.claim_lease_s, 6 * config.interval_s) * 1000)
        self._keep_ms = int(config.claim_retention_days * 86_400_000)
        self._open: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._takeover: asyncio.Task[None] | None = None
        self.fired: list[dict[str, Any]] = []
        # Claimed but not yet in the audit log (it was unreachable): retried at every check.
        self._pending: list[_Claim] = []
        self._unmarked: list[_Claim] = []  # recorded, but the claim not yet marked so
        # One recorder at a time: the checks, the takeover loop and `fire` (from requests) all
        # record, and two walking the same pending claims would record one twice.
        self._recording = asyncio.Lock()

    def start(self) -> None:
        self._task = spawn(self._run(), name="alerts-monitor")
        self._takeover = spawn(self._takeover_loop(), name="alerts-takeover")

    async def stop(self) -> None:
        await cancel(self._task)
        await cancel(self._takeover)

    async def _takeover_loop(self) -> None:
        """Raises the alerts dead processes left claimed and unrecorded (at start, then every check
        interval), and prunes the claims done with (hourly); apart from the checks, so an alert
        nobody raises again (a guardrail's, a session's, a provider's) is not lost either."""
        pruned_at: float | None = None
        while True:
            try:
                await self.take_over_stale()
            except Exception:
                log.exception("alert takeover failed")
            if pruned_at is None or time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                try:
                    removed = await self.prune()
                    if removed:
                        log.info("alerts: pruned %d claim(s) done with", removed)
                    pruned_at = time.monotonic()
                except Exception:
                    log.exception("alert claim pruning failed")
            await asyncio.sleep(self.config.interval_s)

    async def take_over_stale(self) -> list[dict[str, Any]]:
        """Raises every alert whose claim was left pending past the lease (its process died);
        returns those this call recorded. Exactly one process wins each claim."""
        fired: list[dict[str, Any]] = []
        mine = {c.name for c in self._pending}
        for stored in await self._store.stale_alert_claims(self._now_ms() - self._stale_ms):
            if stored.key in mine:
                continue  # this process's own pending claim: retried by the checks
            claim = await self._take_over(stored, None)
            if claim is not None:
                self._pending.append(claim)
                await self._record_pending(fired)
        return fired

    async def prune(self) -> int:
        now = self._now_ms()
        return await self._store.prune_alert_claims(now, now - self._keep_ms)

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
        until = facts.get("window_end")
        repeat_until = datetime.fromisoformat(until) if until else FOREVER
        for t in crossed[:-1]:
            await self._claim(f"{kind}:{budget}:{window}:{t:g}", None, repeat_until)
        pct = spent * 100 / limit
        what = "soft budget" if facts.get("soft") else "budget"
        summary = (
            f"{what} {budget!r} ({facts['scope'].replace('_', ' ')} {facts['scope_id']}) reached {_pct(top)}: "
            f"${spent / PICO_PER_DOLLAR:.4f} of ${limit / PICO_PER_DOLLAR:.4f} spent ({pct:.1f}%)"
        )
        severity = "critical" if top >= 100 else "warning"
        alert = await self.fire(
            f"{kind}:{budget}:{window}:{top:g}", kind, severity, summary, budget=budget, threshold_percent=top,
            spent_dollars=spent / PICO_PER_DOLLAR, limit_dollars=limit / PICO_PER_DOLLAR,
            repeat_until=repeat_until, **facts,
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
            repeat_until=datetime.fromtimestamp((hour + 1) * 3600, UTC),
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

    async def _claim(self, alert_id: str, alert: dict[str, Any] | None, repeat_until: datetime | None) -> _Claim | None:
        """The claim of `alert_id` when this call holds it, to be recorded: the first anywhere to
        claim it, or the one that took over a claim its process left pending and died with. None
        for a threshold claimed quietly (`alert` None: its claim is recorded at once)."""
        if alert_id in self._claimed:
            return None
        now = self._now_ms()
        keep = now if repeat_until is None else int(min(repeat_until, FOREVER).timestamp() * 1000)
        try:
            last = await self._store.last_audit() if alert is not None else None
            mine = AlertClaim(
                claim_key(alert_id), alert_id, PENDING if alert is not None else RECORDED, _token(), now, keep,
                last.seq if last is not None else 0, alert,
            )  # fmt: skip
            stored = await self._store.claim_alert(mine)
        except Exception:  # the store is unreachable: no claim can be made (a check raises it again)
            log.warning("alert %s could not be claimed", alert_id, exc_info=True)
            return None
        if stored.token == mine.token:
            self._claimed.add(alert_id)
            return _Claim(alert, mine.key, mine.token, now, mine.audit_after) if alert is not None else None
        if stored.state == RECORDED:
            self._claimed.add(alert_id)  # quiet from now on
            return None
        if now - stored.claimed_ms < self._stale_ms:
            return None  # another process is recording it
        self._claimed.add(alert_id)
        try:
            return await self._take_over(stored, alert)
        except Exception:  # the takeover loop tries again
            self._claimed.discard(alert_id)
            log.warning("alert %s could not be taken over", alert_id, exc_info=True)
            return None

    async def _take_over(self, stored: AlertClaim, alert: dict[str, Any] | None) -> _Claim | None:
        """The claim of an alert whose process died before recording it, taken over (compare-and-set:
        one process wins), to be recorded: the alert kept with the claim (else `alert`)."""
        alert = stored.alert if stored.alert is not None else alert
        now, token = self._now_ms(), _token()
        state = PENDING if alert is not None else RECORDED  # a quiet claim (or one from before 0019): nothing to raise
        if not await self._store.swap_alert_claim(stored.key, stored.token, token, now, state, alert):
            return None  # another process took it over first
        if alert is None:
            return None
        log.warning("alert %s was claimed but never recorded (its process died): recording it now", alert["alert_id"])
        return _Claim(alert, stored.key, token, now, stored.audit_after, look=True)

    async def fire(
        self,
        alert_id: str,
        kind: str,
        severity: str,
        summary: str,
        *,
        repeat_until: datetime | None = None,
        **facts: Any,
    ) -> dict[str, Any] | None:
        """Raises one alert: `alert_id` names it once for every replica (a second call with the same id,
        here or elsewhere, sends nothing); it is recorded in the audit log, which the sinks deliver from.
        `repeat_until`: until when the same id may be raised again (a budget window's end), so its claim
        is kept that long at least; None for an alert raised once. Returns the alert when this call
        recorded it."""
        alert = {
            "alert_id": alert_id,
            "type": kind,
            "severity": severity,
            "summary": summary,
            "fired_at": datetime.now(UTC).isoformat(),
            **facts,
        }
        claim = await self._claim(alert_id, alert, repeat_until)
        if claim is None:
            return None
        self._pending.append(claim)
        recorded: list[dict[str, Any]] = []
        await self._record_pending(recorded)
        return claim.alert if any(a is claim.alert for a in recorded) else None

    async def _record_pending(self, fired: list[dict[str, Any]]) -> None:
        """Records the claimed alerts in the audit log (the outbox), then marks their claims
        recorded; one that cannot be recorded now stays pending, its claim renewed, and is tried
        again at the next check, so a store outage loses none."""
        async with self._recording:
            await self._record_each(fired)

    async def _record_each(self, fired: list[dict[str, Any]]) -> None:
        for claim in list(self._unmarked):
            if await self._mark(claim):
                self._unmarked.remove(claim)
        for claim in list(self._pending):
            try:
                if not await self._renew(claim):
                    self._pending.remove(claim)  # judged dead and taken over by another process
                    continue
                if claim.look and await self._in_log(claim):
                    log.warning("alert %s was in the audit log already: not recorded again", claim.alert["alert_id"])
                    self._pending.remove(claim)
                    if not await self._mark(claim):
                        self._unmarked.append(claim)
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

    async def _in_log(self, claim: _Claim) -> bool:
        """Whether the audit log holds the alert after the head its claim was made at (the dead
        claimer recorded it, and died before marking its claim). Read once, on takeovers only."""
        alert_id = claim.alert["alert_id"]
        async for record in self._store.audit_records(claim.audit_after + 1):
            if record.kind == "alert" and record.data.get("alert_id") == alert_id:
                return True
        claim.look = False
        return False

    async def _renew(self, claim: _Claim) -> bool:
        """Keeps a claim this process still holds from looking orphaned; False when it lost it."""
        now = self._now_ms()
        if claim.renewed_ms is not None and now - claim.renewed_ms < self._stale_ms // 4:
            return True  # fresh: no write
        token = _token()
        if not await self._store.swap_alert_claim(claim.name, claim.token, token, now, PENDING):
            log.warning("alert %s: claim taken over by another process", claim.alert["alert_id"])
            return False
        claim.token, claim.renewed_ms = token, now
        return True

    async def _mark(self, claim: _Claim) -> bool:
        try:
            await self._store.swap_alert_claim(claim.name, claim.token, _token(), self._now_ms(), RECORDED)
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

    async def fire(
        self,
        alert_id: str,
        kind: str,
        severity: str,
        summary: str,
        *,
        repeat_until: datetime | None = None,
        **facts: Any,
    ) -> dict[str, Any] | None:
        """The one way any part of the gateway raises an alert (guardrails, sessions, the monitor)."""
        if not self.config.enabled:
            return None
        return await self.monitor.fire(alert_id, kind, severity, summary, repeat_until=repeat_until, **facts)

    async def stop(self) -> None:
        await self.monitor.stop()
        for runner in self.runners:
            await runner.stop()
