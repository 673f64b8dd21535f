"""Runaway detection: a session spending faster than a threshold, the same tool call failing in
a loop, or a session running past N hours (docs/sessions-control.md).

Each rule applies to the sessions of one key, team, customer or access profile (or every key).
Checked on the request path only for the keys a rule covers: the tool loop and the session's age
when a request comes in (the request carries the conversation), the spend rate when it is
settled. A detection is claimed once for every replica, then recorded in the audit log
(`runaway`) and raised as an alert (`Alerts.fire`); with `action: pause` it also throws the kill
switch on that key's session (`Stops.throw_once`, actor `runaway:<rule>`), so the session's next
requests are refused, on every replica, until someone resumes it.

The claim is a pending row among the alert claims (`detection:<digest>`) keeping what the
detection does, marked done after its last effect; each effect is safe to redo (the alert has
its own durable claim, the pause is one stop per detection ever). A claim left pending past the
lease (its process died) is taken over, compare-and-set, by the next detection of the same thing
or by the takeover loop, which looks in the audit log after the claim for the records the dead
process made and redoes the rest: so a crash at any step loses nothing and doubles nothing.

The spend rate is measured over the session's settlements on every replica when the counters
are shared (`governance.backend: redis`: one atomic script adds a settlement and reads each
window's total, `SharedSpendRates`), so a session spread over n replicas trips at its whole rate,
once. On the local backend each replica measures its own settlements (in this process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sluice.audit.log import AuditLog
from sluice.core.tasks import cancel, spawn
from sluice.core.windows import Duration
from sluice.sessions.caps import SessionStarts
from sluice.sessions.ids import NO_SESSION, session_key
from sluice.sessions.stops import Stops, refusal
from sluice.sessions.tool_loops import failing_calls
from sluice.settings import RunawayConfig
from sluice.storage.ports import SharedSpendRates, Store
from sluice.storage.records import AlertClaim, VirtualKey

log = logging.getLogger("sluice.runaway")
PICO_PER_DOLLAR = 10**12
ACTOR_PREFIX = "runaway:"
_TRACKED = 50_000  # sessions whose recent spend is remembered, at most
DETECTION = "detection:"  # a detection's claim among the alert claims: never raised as an alert
PENDING, RECORDED = "pending", "recorded"
FOREVER_MS = 253_402_300_799_000  # a detection is done once for good (9999-12-31): its claim is kept

Fire = Callable[..., Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Detection:
    rule: RunawayConfig
    kind: str  # spend_rate | tool_loop | session_hours
    summary: str
    facts: dict[str, Any]


class Runaway:
    def __init__(
        self,
        rules: list[RunawayConfig],
        store: Store,
        *,
        stops: Stops | None,
        audit: AuditLog | None,
        fire: Fire | None,
        customer_of: Callable[[VirtualKey], str | None] = lambda key: key.customer_id,
        rates: SharedSpendRates | None = None,
        lease_s: float = 60.0,
    ) -> None:
        self.rules = rules
        self._store = store
        self._stops = stops
        self._audit = audit
        self._fire = fire
        self._customer_of = customer_of
        self._starts = SessionStarts(store)
        self._rates = rates  # shared by the replicas; None: this process's own `_spend`
        self._spend: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        self._claimed: set[str] = set()  # detections (digests) this replica claimed or saw claimed
        self._lease_ms = int(lease_s * 1000)  # a claim pending longer: its process died
        self._task: asyncio.Task[None] | None = None
        self.clock: Callable[[], float] = time.time

    def rules_for(self, key: VirtualKey) -> list[RunawayConfig]:
        if not self.rules:
            return []
        customer = self._customer_of(key)
        return [
            rule
            for rule in self.rules
            if (rule.virtual_key_id is None or rule.virtual_key_id == key.id)
            and (rule.team_id is None or rule.team_id == key.team_id)
            and (rule.customer_id is None or rule.customer_id == customer)
            and (rule.profile_id is None or rule.profile_id == key.profile_id)
        ]

    async def on_request(self, key: VirtualKey, session_id: str | None, doc: dict[str, Any]) -> None:
        """Checks a request coming in; raises the kill switch's refusal when a `pause` rule trips."""
        rules = self.rules_for(key)
        if not rules:
            return
        session = session_key(session_id) or NO_SESSION
        failed = None
        for rule in rules:
            found: Detection | None = None
            if rule.tool_loop_repeats is not None:
                failed = failed if failed is not None else failing_calls(doc)
                if failed:
                    (name, args), count = failed.most_common(1)[0]
                    if count >= rule.tool_loop_repeats:
                        found = Detection(
                            rule,
                            "tool_loop",
                            f"tool {name!r} failed {count} times with the same arguments",
                            {"tool": name, "arguments": args[:300], "failures": count},
                        )
            if found is None and rule.max_session_hours is not None:
                now = int(self.clock())
                started = await self._starts.start_of(key.id, session, now)
                hours = (now - started) / 3600
                if hours >= rule.max_session_hours:
                    found = Detection(
                        rule,
                        "session_hours",
                        f"session has run {hours:.1f} h (more than {rule.max_session_hours:g} h)",
                        {"hours": round(hours, 2)},
                    )
            if found is not None:
                await self._detected(found, key, session, refuse=True)

    async def on_settled(
        self, key: VirtualKey, session_id: str | None, cost_pico: int, request_id: str | None = None
    ) -> None:
        """Counts a settled request's cost toward its session's spend rate. Never raises."""
        rules = [r for r in self.rules_for(key) if r.spend_rate_usd_per_hour is not None]
        if not rules or cost_pico <= 0:
            return
        session = session_key(session_id) or NO_SESSION
        now = self.clock()
        windows = [Duration.parse(rule.spend_rate_window).seconds or 900 for rule in rules]
        if self._rates is not None and request_id is not None:
            try:
                distinct = sorted(set(windows))
                totals = await self._rates.add_spend(f"{key.id}\0{session}", request_id, cost_pico, now, distinct)
            except Exception:
                log.exception("runaway spend rate of %s could not be counted", key.id)
                return
            spent_in = dict(zip(distinct, totals, strict=True))
        else:
            spent_in = self._local_spend(key.id, session, cost_pico, now, windows)
        for rule, window in zip(rules, windows, strict=True):
            assert rule.spend_rate_usd_per_hour is not None
            spent = spent_in[window]
            allowed = int(rule.spend_rate_usd_per_hour * PICO_PER_DOLLAR) * window // 3600
            if spent > allowed:
                dollars = spent / PICO_PER_DOLLAR
                detection = Detection(
                    rule,
                    "spend_rate",
                    f"session spent ${dollars:.4f} in {rule.spend_rate_window} "
                    f"(more than ${rule.spend_rate_usd_per_hour}/h)",
                    {"spent_usd": round(dollars, 6), "window": rule.spend_rate_window},
                )
                try:
                    await self._detected(detection, key, session, refuse=False)
                except Exception:
                    log.exception("runaway detection %s could not be recorded", rule.id)

    def _local_spend(self, key_id: str, session: str, cost_pico: int, now: float, windows: list[int]) -> dict[int, int]:
        """This process's settlements of the session: what each window spent up to now."""
        recent = self._spend.get((key_id, session))
        if recent is None:
            if len(self._spend) >= _TRACKED:
                self._spend.clear()
            recent = self._spend[key_id, session] = deque()
        recent.append((now, cost_pico))
        spent_in: dict[int, int] = {}
        for window in windows:
            while recent and recent[0][0] < now - max(window, 1):
                recent.popleft()
            spent_in[window] = sum(cost for at, cost in recent if at >= now - window)
        return spent_in

    async def _detected(self, found: Detection, key: VirtualKey, session: str, *, refuse: bool) -> None:
        rule = found.rule
        digest = hashlib.sha256(f"{rule.id}\0{found.kind}\0{key.id}\0{session}".encode()).hexdigest()[:32]
        if digest not in self._claimed:
            self._claimed.add(digest)
            try:
                await self._claim(_effects(found, key, session, digest))
            except Exception:  # left pending (or unclaimed): the takeover loop or the next check redoes it
                self._claimed.discard(digest)
                log.warning("runaway detection %s could not be recorded yet", rule.id, exc_info=True)
        if rule.action == "pause" and self._stops is not None and refuse:
            stop = self._stops.check(key, session)
            if stop is not None:
                raise refusal(stop)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def _claim(self, effects: dict[str, Any]) -> None:
        """Claims the detection (pending, with its effects), or takes over the claim a dead process
        left pending past the lease; then does its effects and marks it done."""
        digest = effects["digest"]
        if await self._store.meta_value(f"runaway:{digest}") is not None:
            return  # claimed by the version before this one (its claim in sluice_meta), done
        now = self._now_ms()
        last = await self._store.last_audit()
        mine = AlertClaim(
            _claim_key(DETECTION + digest), DETECTION + digest, PENDING, _token(), now, FOREVER_MS,
            last.seq if last is not None else 0, effects,
        )  # fmt: skip
        stored = await self._store.claim_alert(mine)
        if stored.token == mine.token:
            await self._apply(mine, look=False)
        elif stored.state == PENDING and now - stored.claimed_ms >= self._lease_ms:
            await self._take_over(stored)

    async def take_over_stale(self) -> int:
        """Redoes every detection whose claim was left pending past the lease (its process died
        before doing all its effects); exactly one process wins each. Returns how many it redid."""
        done = 0
        for stored in await self._store.stale_alert_claims(self._now_ms() - self._lease_ms, detections=True):
            if await self._take_over(stored):
                done += 1
        return done

    async def _take_over(self, stored: AlertClaim) -> bool:
        token = _token()
        if stored.alert is None or not await self._store.swap_alert_claim(
            stored.key, stored.token, token, self._now_ms(), PENDING
        ):
            return False  # another process took it over first
        log.warning("runaway detection %s was claimed but not done (its process died): redoing it", stored.alert_id)
        await self._apply(dataclasses.replace(stored, token=token), look=True)
        return True

    async def _apply(self, claim: AlertClaim, *, look: bool) -> None:
        """The detection's effects, each once: the `runaway` audit record, the alert (its own
        durable claim makes it once), the pause (thrown once, keyed by the detection); `look` on a
        takeover: the dead claimer's records are looked for in the audit log after the claim.
        Before each effect the claim is renewed (compare-and-set): a process that stalled past the
        lease and was taken over stops there, so the one that took over does the rest, alone."""
        effects = claim.alert
        assert effects is not None
        facts, summary, actor = effects["facts"], effects["summary"], effects["actor"]
        held = claim.token

        async def hold(state: str = PENDING) -> bool:
            nonlocal held
            token = _token()
            if not await self._store.swap_alert_claim(claim.key, held, token, self._now_ms(), state):
                log.warning("runaway detection %s: claim taken over by another process", claim.alert_id)
                return False
            held = token
            return True

        seen_runaway, seen_stop = False, False
        if look:
            seen_runaway, seen_stop = await self._in_log(claim, effects)
            if not await hold():
                return
        if self._audit is not None and not seen_runaway:
            await self._audit.append("runaway", actor, {**facts, "summary": summary, "detection": effects["digest"]})
        if self._fire is not None:
            if not await hold():
                return
            await self._fire(f"runaway:{effects['digest']}", "runaway", effects["severity"], summary, **facts)
        if effects["pause"] is not None and self._stops is not None:
            if not await hold():
                return
            await self._stops.throw_once(
                "session", facts["session_id"], effects["pause"], actor, key_id=facts["virtual_key_id"],
                recorded=seen_stop,
            )  # fmt: skip
        await hold(RECORDED)

    async def _in_log(self, claim: AlertClaim, effects: dict[str, Any]) -> tuple[bool, bool]:
        """(the `runaway` record, the pause's `stop` record) of this detection, if the audit log
        holds them after the head its claim was made at."""
        runaway = stop = False
        facts = effects["facts"]
        async for record in self._store.audit_records(claim.audit_after + 1):
            data = record.data
            if record.kind == "runaway" and data.get("detection") == effects["digest"]:
                runaway = True
            elif (
                record.kind == "stop"
                and record.actor == effects["actor"]
                and data.get("scope") == "session"
                and data.get("target") == facts["session_id"]
                and data.get("key_id") == facts["virtual_key_id"]
                and data.get("stop_reason") == effects["pause"]
            ):
                stop = True
        return runaway, stop

    def start(self) -> None:
        self._task = spawn(self._takeover_loop(), name="runaway-takeover")

    async def stop(self) -> None:
        await cancel(self._task)

    async def _takeover_loop(self) -> None:
        """Redoes the detections dead processes left pending (at start, then every lease/4), so
        one nobody detects again (a session that ended) is not lost either."""
        while True:
            try:
                await self.take_over_stale()
            except Exception:
                log.exception("runaway takeover failed")
            await asyncio.sleep(max(self._lease_ms / 4000, 0.05))


def _claim_key(claim_id: str) -> str:
    return hashlib.sha256(claim_id.encode()).hexdigest()[:40]  # as an alert's (sluice.alerts.monitor)


def _token() -> int:
    return secrets.randbits(62) + 1


def _effects(found: Detection, key: VirtualKey, session: str, digest: str) -> dict[str, Any]:
    """What a detection does, kept with its claim so another process can redo it (figures, ids
    and the tool's name and arguments' first 300 characters, as its audit record has them)."""
    rule = found.rule
    facts = {
        "rule": rule.id,
        "detector": found.kind,
        "action": rule.action,
        "virtual_key_id": key.id,
        "team_id": key.team_id,
        "session_id": session,
        **found.facts,
    }
    return {
        "digest": digest,
        "actor": ACTOR_PREFIX + rule.id,
        "facts": facts,
        "summary": f"Runaway session {session} of key {key.id}: {found.summary}",
        "severity": "critical" if rule.action == "pause" else "warning",
        "pause": f"runaway detected: {found.summary}" if rule.action == "pause" else None,
    }
