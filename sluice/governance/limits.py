"""Budgets and rate limits as one mechanism: reserve before the upstream call, settle after.

Every limit is a counter per window with a maximum: dollars (budgets), tokens, requests, or
requests in flight (no window). Admission reserves what the request can consume in every
counter that applies to its key, its team and the team's customer, all or nothing; settlement
writes the real consumption to the durable ledger first and then replaces the reservations by it.
A reservation a crashed gateway never settled lapses after its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sluice.core.clock import SYSTEM_CLOCK, Clock
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.windows import Duration, Window, window_at
from sluice.governance.config_sync import KINDS as GOVERNANCE_KINDS
from sluice.governance.config_sync import parse_object
from sluice.governance.ledger_writer import LedgerWriter
from sluice.governance.profiles import profile_limits
from sluice.governance.refresh import Follower, VersionWatch
from sluice.governance.spend_journal import SpendJournal
from sluice.pricing.table import pico_to_dollars
from sluice.sessions.caps import (
    NO_SESSION,
    SESSION_COUNTER_TTL_S,
    SessionCap,
    SessionStarts,
    caps_from,
    missing_session,
    profile_caps,
    session_bucket,
    too_long,
)
from sluice.sessions.ids import session_key
from sluice.settings import (
    AccessProfileConfig,
    BudgetConfig,
    GovernanceConfig,
    RateLimitConfig,
    SessionCapConfig,
    TeamConfig,
)
from sluice.storage.ports import LimitCounters, LocalCounters, Store
from sluice.storage.records import Bucket, BucketState, SpendRow, VirtualKey

log = logging.getLogger("sluice.limits")
Measure = Literal["cost", "tokens", "requests", "concurrent"]
PICO_PER_DOLLAR = 10**12
# Measures whose reservations are estimates above what requests really use, so a refusal caused
# only by other requests' reservations may clear when they settle (requests and slots are exact).
_ESTIMATED = ("cost", "tokens")
BUSY_RETRY_AFTER_S = 1.0  # what a 429 "busy" asks the client to wait


@dataclass(frozen=True, slots=True)
class LimitRule:
    id: str
    measure: Measure
    scope: str  # virtual_key | team | customer; session for a session cap's dollars (scope_id: the session)
    scope_id: str
    limit: int  # pico-dollars, tokens or requests
    duration: Duration | None
    calendar_aligned: bool = False
    fail_open: bool = False

    def describe_limit(self) -> str:
        per = " per session" if self.scope == "session" else f" per {self.duration}" if self.duration else " at once"
        if self.measure == "cost":
            return f"${pico_to_dollars(self.limit):.2f}{per}"
        unit = {"tokens": "tokens", "requests": "requests", "concurrent": "requests in flight"}[self.measure]
        return f"{self.limit} {unit}{per}"


def rules_from(budgets: list[BudgetConfig], rate_limits: list[RateLimitConfig]) -> list[LimitRule]:
    rules: list[LimitRule] = []
    for b in budgets:
        scope, ident = b.scope
        rules.append(
            LimitRule(
                b.id,
                "cost",
                scope,
                ident,
                int(b.max_limit * PICO_PER_DOLLAR),
                Duration.parse(b.reset_duration),
                b.calendar_aligned,
                b.fail_open,
            )
        )
    for r in rate_limits:
        scope, ident = r.scope
        if r.token_max_limit and r.token_reset_duration:
            rules.append(
                LimitRule(
                    f"{r.id}:tokens",
                    "tokens",
                    scope,
                    ident,
                    r.token_max_limit,
                    Duration.parse(r.token_reset_duration),
                    False,
                    r.fail_open,
                )
            )
        if r.request_max_limit and r.request_reset_duration:
            rules.append(
                LimitRule(
                    f"{r.id}:requests",
                    "requests",
                    scope,
                    ident,
                    r.request_max_limit,
                    Duration.parse(r.request_reset_duration),
                    False,
                    r.fail_open,
                )
            )
        if r.max_concurrent_requests:
            rules.append(
                LimitRule(
                    f"{r.id}:concurrent",
                    "concurrent",
                    scope,
                    ident,
                    r.max_concurrent_requests,
                    None,
                    False,
                    r.fail_open,
                )
            )
    return rules


class NotNow(Exception):
    """`Limits.admit_now` cannot decide without awaiting: use `admit`."""


@dataclass(slots=True)
class Admission:
    request_id: str
    admitted_at: datetime
    key: VirtualKey
    team_id: str | None
    customer_id: str | None
    items: list[tuple[LimitRule, Bucket, Window | None]]
    states: list[BucketState]
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


class Limits:
    def __init__(
        self,
        governance: GovernanceConfig,
        counters: LimitCounters,
        store: Store,
        *,
        clock: Clock = SYSTEM_CLOCK,
        refresh_interval: float = 1.0,
        watch: VersionWatch | None = None,
        linger_s: float = 0.0,
    ) -> None:
        """`watch`: the `config_version` watch shared with the other followers of it; `linger_s`:
        how long the ledger rows nobody waits for wait for company (store.linger_ms)."""
        self._counters = counters
        self._local = counters if isinstance(counters, LocalCounters) else None  # admit_now's path
        self._store = store
        self._writer = LedgerWriter(store, journal=SpendJournal(governance.spend_journal_path), linger_s=linger_s)
        self._clock = clock
        self._lease_s = governance.reservation_lease_s
        self._team_customer: dict[str, str | None] = {}
        self._anchors: dict[str, datetime] = {}
        self._seeded: set[str] = set()
        self._by_scope: dict[tuple[str, str], list[LimitRule]] = {}
        # rule id -> its current window's bucket; by id, whose hash is cached, not by the rule
        self._current: dict[str, tuple[LimitRule, Bucket, Window | None]] = {}
        self._profiles: dict[str, AccessProfileConfig] = {}
        self._derived: dict[tuple[str, str], list[LimitRule]] = {}  # (key id, profile id) -> rules
        self._follower = Follower("limits", watch or store.config_version, self.reload, interval=refresh_interval)
        self._busy_wait_s = governance.busy_wait_s
        # Settlements in this process wake waiters at once; other replicas' are seen by polling.
        self._poll_s = 0.25 if governance.backend == "redis" else 1.0
        self._settled = _Settlements()
        # Session caps (sluice.sessions.caps): by what they are attached to, and per derived key.
        self._session_caps: dict[tuple[str, str], list[SessionCap]] = {}
        self._derived_caps: dict[tuple[str, str], list[SessionCap]] = {}
        self._session_starts = SessionStarts(store)
        # admit_now's per-key memo: key id -> (the key object it was made for, its rules' current
        # buckets, their measures, from / until when they all stay current, its session caps).
        # Cleared by `reload` (rules, teams and profiles change only there); a key object that
        # is not the one remembered (a key edited, reloaded) makes it again.
        self._admit_memo: dict[str, _AdmitMemo] = {}

    async def start(self) -> None:
        await self._writer.start()  # the previous run's journalled spend, before any counter is seeded
        await self._follower.start()

    async def reload(self) -> None:
        """Rules from the live configuration in the store; a change applies from the next
        request on, and counters already running keep their usage."""
        budgets, rate_limits, teams, profiles, session_caps = [], [], [], {}, []
        for obj in await self._store.list_objects():
            if obj.kind not in GOVERNANCE_KINDS:
                continue  # users, groups, providers, routing, MCP and admin objects are someone else's
            model = parse_object(obj)
            if isinstance(model, BudgetConfig):
                budgets.append(model)
            elif isinstance(model, RateLimitConfig):
                rate_limits.append(model)
            elif isinstance(model, TeamConfig):
                teams.append(model)
            elif isinstance(model, AccessProfileConfig):
                profiles[model.id] = model
            elif isinstance(model, SessionCapConfig):
                session_caps.append(model)
        rules = rules_from(budgets, rate_limits)
        now = int(self._clock.now().timestamp())
        # A profile's rule windows start when the profile rule first appeared, for all its keys.
        templates = [rule for p in profiles.values() for rule in rules_from(*profile_limits(p, ""))]
        for rule in [*rules, *templates]:
            if rule.duration is not None and not rule.calendar_aligned and rule.id not in self._anchors:
                first = await self._store.first_seen(f"anchor:{rule.id}", now)
                self._anchors[rule.id] = datetime.fromtimestamp(first, UTC)
        by_scope: dict[tuple[str, str], list[LimitRule]] = {}
        for rule in rules:
            by_scope.setdefault((rule.scope, rule.scope_id), []).append(rule)
        self._team_customer = {t.id: t.customer_id for t in teams}
        self._by_scope = by_scope
        self._profiles = profiles
        self._derived = {}
        self._current = {}
        caps: dict[tuple[str, str], list[SessionCap]] = {}
        for cap in caps_from(session_caps):
            caps.setdefault((cap.scope, cap.scope_id), []).append(cap)
        self._session_caps, self._derived_caps = caps, {}
        self._admit_memo = {}

    @property
    def journalled(self) -> int:
        """Settlements in the local spend journal, waiting for the store."""
        return self._writer.journalled

    async def stop(self) -> None:
        await self._follower.stop()
        await self._writer.drain()
        await self._counters.close()

    def scopes_of(self, key: VirtualKey) -> tuple[str | None, str | None]:
        team = key.team_id
        customer = key.customer_id or (self._team_customer.get(team) if team else None)
        return team, customer

    def rules_for(self, key: VirtualKey) -> list[LimitRule]:
        team, customer = self.scopes_of(key)
        found = list(self._by_scope.get(("virtual_key", key.id), ()))
        if team:
            found += self._by_scope.get(("team", team), ())
        if customer:
            found += self._by_scope.get(("customer", customer), ())
        if key.profile_id:
            found += self._profile_rules(key.id, key.profile_id)
        return found

    def _profile_rules(self, key_id: str, profile_id: str) -> list[LimitRule]:
        cached = self._derived.get((key_id, profile_id))
        if cached is not None:
            return cached
        profile = self._profiles.get(profile_id)
        rules = rules_from(*profile_limits(profile, key_id)) if profile else []
        for rule in rules:
            template = rule.id.replace(f"@{key_id}", "@", 1)
            if template in self._anchors:
                self._anchors[rule.id] = self._anchors[template]
        self._derived[key_id, profile_id] = rules
        return rules

    def session_caps_for(self, key: VirtualKey) -> list[SessionCap]:
        """The session caps of the key, its team, its customer and its access profile."""
        if not self._session_caps and not self._profiles:
            return []
        team, customer = self.scopes_of(key)
        found = list(self._session_caps.get(("virtual_key", key.id), ()))
        if team:
            found += self._session_caps.get(("team", team), ())
        if customer:
            found += self._session_caps.get(("customer", customer), ())
        if key.profile_id:
            derived = self._derived_caps.get((key.id, key.profile_id))
            if derived is None:
                profile = self._profiles.get(key.profile_id)
                derived = self._derived_caps[key.id, key.profile_id] = profile_caps(profile, key.id) if profile else []
            found += derived
        return found

    async def admit(
        self, request_id: str, key: VirtualKey, cost_pico: int, tokens: int, session_id: str | None = None
    ) -> Admission | None:
        if self._local is not None:
            with contextlib.suppress(NotNow):
                return self.admit_now(request_id, key, cost_pico, tokens, session_id=session_id)
        rules = self.rules_for(key)
        caps = self.session_caps_for(key)
        if not rules and not caps:
            return None
        now = self._clock.now()
        team, customer = self.scopes_of(key)
        items = [self._bucket(rule, now) for rule in rules]
        amounts = {"cost": cost_pico, "tokens": tokens, "requests": 1, "concurrent": 1}
        try:
            if caps:
                items += await self._session_items(caps, key, session_id, now)
            await self._seed(items)
            states = await self._reserve(request_id, items, amounts)
        except SluiceError:
            raise
        except Exception:
            if all(rule.fail_open for rule in rules) and all(cap.fail_open for cap in caps):
                log.warning("limit counters unreachable; admitting %s (every rule is fail_open)", request_id)
                return None
            log.exception("limit counters unreachable; refusing %s", request_id)
            raise SluiceError(
                ErrorKind.GATEWAY_NOT_CONFIGURED,
                "Spend limits cannot be checked right now, so the request is refused. Try again shortly.",
                retry_after=5,
            ) from None
        admission = Admission(request_id, now, key, team, customer, items, states)
        admission.headers = _headers(items, states, now)
        return admission

    async def _session_items(
        self, caps: list[SessionCap], key: VirtualKey, session_id: str | None, now: datetime
    ) -> list[tuple[LimitRule, Bucket, Window | None]]:
        """Reads when the session started (once: the store's first sight of it), then its caps'
        counters as `_session_items_now` builds them."""
        session = session_key(session_id)
        if session is not None or all(cap.without_session != "refuse" for cap in caps):
            await self._session_starts.start_of(key.id, session or NO_SESSION, int(now.timestamp()))
        return self._session_items_now(caps, key, session_id, now)

    def _session_items_now(
        self, caps: list[SessionCap], key: VirtualKey, session_id: str | None, now: datetime
    ) -> list[tuple[LimitRule, Bucket, Window | None]]:
        """A session cap's counter for this key's session (its dollars, in one more bucket of the
        same reservation), after refusing a session past its duration or one that names none.
        Raises `NotNow` when the session's start has not been read yet."""
        session = session_key(session_id)
        at = int(now.timestamp())
        items: list[tuple[LimitRule, Bucket, Window | None]] = []
        for cap in caps:
            if session is None and cap.without_session == "refuse":
                raise missing_session(cap)
            name = session or NO_SESSION
            started = self._session_starts.known(key.id, name)
            if started is None:
                raise NotNow
            if cap.max_duration_s is not None and at - started >= cap.max_duration_s:
                raise too_long(cap, name, at - started)
            if cap.max_cost_pico is not None:
                rule = LimitRule(cap.id, "cost", "session", name, cap.max_cost_pico, None, False, cap.fail_open)
                expires = started + max(SESSION_COUNTER_TTL_S, cap.max_duration_s or 0)
                items.append((rule, Bucket(session_bucket(cap.id, key.id, name), rule.limit, float(expires)), None))
        return items

    def admit_now(
        self,
        request_id: str,
        key: VirtualKey,
        cost_pico: int,
        tokens: int,
        *,
        session_id: str | None = None,
        headers: bool = True,
    ) -> Admission | None:
        """`admit` without awaiting, for counters in this process whose current windows have been
        read from the ledger: the same rules, buckets, checks and refusals. Raises `NotNow` when
        it cannot decide without awaiting (counters elsewhere, a window not seeded yet, a limit
        only busy, which `admit` waits on). `headers=False`: no caller will see the limits'
        headers (a replay), so they are not formatted."""
        local = self._local
        now = self._clock.now()
        memo = self._admit_memo.get(key.id)
        if memo is None or memo.key is not key or not memo.start <= now < memo.end:
            memo = self._admit_memo[key.id] = self._memo_for(key, now)
        if memo.empty:
            return None
        if local is None:
            raise NotNow
        items = memo.items
        if memo.caps:
            items = items + self._session_items_now(memo.caps, key, session_id, now)
        if not memo.seeded:  # (a session cap's counter has no window: it is never seeded)
            memo.seeded = all(window is None or bucket.key in self._seeded for _, bucket, window in memo.items)
            if not memo.seeded:
                raise NotNow
        amounts = {"cost": cost_pico, "tokens": tokens, "requests": 1, "concurrent": 1}
        refused, states = local.reserve_now(
            request_id, [(bucket, amounts[rule.measure]) for rule, bucket, _ in items], self._lease_s, now.timestamp()
        )
        if refused is not None:
            spent = _spent(items, states, amounts)
            if spent is not None:
                raise _refusal(items[spent], states[spent], amounts, now)
            if items[refused][0].measure not in _ESTIMATED:
                raise _refusal(items[refused], states[refused], amounts, now)
            raise NotNow  # only busy: nothing was reserved, and `admit` waits for settlements
        team, customer = self.scopes_of(key)
        admission = Admission(request_id, now, key, team, customer, items, states)
        if headers:
            admission.headers = _headers(items, states, now)
        return admission

    def _memo_for(self, key: VirtualKey, now: datetime) -> _AdmitMemo:
        """What `admit_now` needs of a key at `now`, and the span of time it stays true."""
        rules = self.rules_for(key)
        caps = self.session_caps_for(key)
        items = [self._bucket(rule, now) for rule in rules]
        windows = [window for _, _, window in items if window is not None]
        start = max((w.start for w in windows), default=datetime.min.replace(tzinfo=UTC))
        end = min((w.end for w in windows), default=datetime.max.replace(tzinfo=UTC))
        return _AdmitMemo(key, items, caps, start, end, not rules and not caps)

    async def _reserve(
        self, request_id: str, items: list[tuple[LimitRule, Bucket, Window | None]], amounts: dict[str, int]
    ) -> list[BucketState]:
        """Reserves `amounts` in every counter, all or nothing, or raises the refusal. A limit whose
        settled usage (plus what this request already holds) leaves room for `amounts` is not
        spent, only busy: other requests in flight hold the rest. Then wait, up to `busy_wait_s`,
        for settlements to give room back, and answer "busy" (429, retryable) after that: a 402
        (or a rate limit's 429 with its window's reset) only ever means the limit is used up."""
        deadline: float | None = None
        while True:
            now = self._clock.now()
            refused, states = await self._counters.reserve(
                request_id,
                [(bucket, amounts[rule.measure]) for rule, bucket, _ in items],
                self._lease_s,
                now.timestamp(),
            )
            if refused is None:
                return states
            spent = _spent(items, states, amounts)
            if spent is not None:
                raise _refusal(items[spent], states[spent], amounts, now)
            rule, bucket, _ = items[refused]
            if rule.measure not in _ESTIMATED:
                raise _refusal(items[refused], states[refused], amounts, now)
            if deadline is None:
                deadline = time.monotonic() + self._busy_wait_s
            left = deadline - time.monotonic()
            if left <= 0:
                raise _busy(items[refused], states[refused], amounts)
            await self._settled.wait(bucket.key, min(left, self._poll_s))

    def _bucket(self, rule: LimitRule, now: datetime) -> tuple[LimitRule, Bucket, Window | None]:
        # The current window of a rule stays the same until it ends: compute it once per window.
        cached = self._current.get(rule.id)
        if cached is not None and cached[0] is rule and (cached[2] is None or cached[2].start <= now < cached[2].end):
            return cached
        if rule.duration is None:
            item: tuple[LimitRule, Bucket, Window | None] = (
                rule,
                Bucket(bucket_name(rule.id, rule.measure, None), rule.limit, 0.0),
                None,
            )
        else:
            window = window_at(
                now, rule.duration, calendar_aligned=rule.calendar_aligned, anchor=self._anchors.get(rule.id)
            )
            bucket = Bucket(bucket_name(rule.id, rule.measure, window), rule.limit, window.end.timestamp())
            item = (rule, bucket, window)
        self._current[rule.id] = item
        return item

    async def _seed(self, items: list[tuple[LimitRule, Bucket, Window | None]]) -> None:
        """A window's counter starts from what the ledger holds for it, so a restart loses nothing."""
        for rule, bucket, window in items:
            if window is None or bucket.key in self._seeded:
                continue
            totals = await self._writer.spend_totals(rule.scope, rule.scope_id, window.start, window.end)
            cost, tokens, requests = totals
            used = {"cost": cost, "tokens": tokens, "requests": requests}[rule.measure]
            await self._counters.seed(bucket, used)
            self._seeded.add(bucket.key)

    def guards_output(self, admission: Admission) -> bool:
        """True when a limit counts what the model generates, so a long stream must be watched."""
        return any(rule.measure in ("cost", "tokens") for rule, _, _ in admission.items)

    async def extend(self, admission: Admission, cost_pico: int, tokens: int) -> None:
        """Grows a live reservation (a stream outgrowing its block); raises the refusal when a
        limit cannot cover it, after waiting like an admission when it is only busy."""
        amounts = {"cost": cost_pico, "tokens": tokens, "requests": 0, "concurrent": 0}
        await self._reserve(admission.request_id, admission.items, amounts)

    async def usage(self, key: VirtualKey) -> tuple[float, int]:
        """(largest fraction used of any budget of the key, its team or customer; tokens used in
        the tightest token window) for routing rules. Needs the counters: call only when a rule
        asks. Windows not used yet since the start read as zero."""
        rules = [r for r in self.rules_for(key) if r.measure in ("cost", "tokens")]
        if not rules:
            return 0.0, 0
        fraction, tokens = 0.0, 0
        for rule, _, state in await self.current(rules):
            used = state.used + state.reserved
            if rule.measure == "cost":
                fraction = max(fraction, used / rule.limit)
            else:
                tokens = max(tokens, used)
        return fraction, tokens

    async def current(self, rules: list[LimitRule]) -> list[tuple[LimitRule, Window | None, BucketState]]:
        """Each rule's current window and what its counter holds; a window not used since the start
        reads from the ledger first. Off the request path: routing rules that ask, metrics, alerts."""
        now = self._clock.now()
        items = [self._bucket(rule, now) for rule in rules]
        await self._seed(items)
        states = await self._counters.peek([bucket for _, bucket, _ in items])
        return [(rule, window, state) for (rule, _, window), state in zip(items, states, strict=True)]

    def budget_rules(self) -> list[LimitRule]:
        """The dollar budgets of keys, teams and customers as configured (not the per-key copies
        an access profile makes)."""
        return [rule for rules in self._by_scope.values() for rule in rules if rule.measure == "cost"]

    async def held(self, budgets: list[tuple[str, Window]]) -> list[int]:
        """Pico-dollars that requests in flight hold on each dollar budget (by id) in the given
        window, in one counter read: for a reader that computes the windows itself (the console)."""
        buckets = [
            Bucket(bucket_name(rule_id, "cost", window), 0, window.end.timestamp()) for rule_id, window in budgets
        ]
        return [max(0, int(state.reserved)) for state in await self._counters.peek(buckets)]

    async def release(self, admission: Admission | None) -> None:
        """Gives back a reservation that led to nothing (the attempt failed; a fallback may follow)."""
        if admission is None or admission.settled:
            return
        admission.settled = True
        await self._counters.settle(
            admission.request_id, [(bucket, 0) for _, bucket, _ in admission.items], self._clock.now().timestamp()
        )
        self._settled.notify(bucket.key for _, bucket, _ in admission.items)

    async def settle(self, admission: Admission | None, row: SpendRow, *, wait: bool = True) -> None:
        """Ledger (durable: the store or the local journal) and counters; with Redis both in one
        flight (the settlement is sent before the ledger commits), else the ledger first. Safe to
        call twice. The counters take the spend even when it is durable nowhere (SpendNotDurable
        is raised after): the provider was paid, so the budget must keep holding."""
        if admission is None:
            self._writer.write_later(row)
            return
        if admission.settled:
            return
        admission.settled = True
        actual = {"cost": row.cost_pico, "tokens": row.tokens, "requests": 1, "concurrent": 0}
        # Created first: a Redis backend sends the settlement now, so its round trip overlaps the
        # ledger commit; in-process counters settle when awaited, after the ledger.
        counted = self._counters.settle(
            admission.request_id,
            [(bucket, actual[rule.measure]) for rule, bucket, _ in admission.items],
            self._clock.now().timestamp(),
        )
        try:
            if wait:
                await self._writer.write(row)
            else:
                self._writer.write_later(row)
        finally:
            await counted
            self._settled.notify(bucket.key for _, bucket, _ in admission.items)

    def settle_now(self, admission: Admission | None, row: SpendRow) -> None:
        """`settle(admission, row, wait=False)` without awaiting, for counters in this process:
        the counters take the spend at once, the ledger row is committed in the background.
        Raises `NotNow` for counters elsewhere. Safe to call twice."""
        if self._local is None:
            raise NotNow
        if admission is not None and admission.settled:
            return
        self.count_now(admission, row.cost_pico, row.tokens)
        self._writer.write_later(row)

    def count_now(self, admission: Admission | None, cost_pico: int, tokens: int) -> None:
        """The counters' part of `settle_now` alone, for a caller that keeps no ledger (a replay
        of the request log, whose ledger is the log). Raises `NotNow` for counters elsewhere."""
        if self._local is None:
            raise NotNow
        if admission is None or admission.settled:
            return
        admission.settled = True
        actual = {"cost": cost_pico, "tokens": tokens, "requests": 1, "concurrent": 0}
        self._local.settle_now(
            admission.request_id,
            [(bucket, actual[rule.measure]) for rule, bucket, _ in admission.items],
            self._clock.now().timestamp(),
        )
        self._settled.notify(bucket.key for _, bucket, _ in admission.items)

    def release_now(self, admission: Admission | None) -> None:
        """`release` without awaiting, for counters in this process (`NotNow` for others)."""
        if self._local is None:
            raise NotNow
        if admission is None or admission.settled:
            return
        admission.settled = True
        now = self._clock.now().timestamp()
        self._local.settle_now(admission.request_id, [(bucket, 0) for _, bucket, _ in admission.items], now)
        self._settled.notify(bucket.key for _, bucket, _ in admission.items)

    def spend_row(
        self, admission: Admission | None, request_id: str, key: VirtualKey, cost: int, tokens: int, at: datetime
    ) -> SpendRow:
        team, customer = self.scopes_of(key)
        return SpendRow(request_id, admission.admitted_at if admission else at, key.id, team, customer, cost, tokens)


@dataclass(slots=True)
class _AdmitMemo:
    key: VirtualKey
    items: list[tuple[LimitRule, Bucket, Window | None]]
    caps: list[SessionCap]
    start: datetime
    end: datetime
    empty: bool
    seeded: bool = False  # every window's counter read from the ledger (stays so: `_seeded` only grows)


class _Settlements:
    """Wakes the requests of this process waiting on a counter when a reservation on it settles."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    async def wait(self, key: str, at_most_s: float) -> None:
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most_s):
                await event.wait()

    def notify(self, keys: Iterable[str]) -> None:
        if not self._events:  # nobody waits (always, on a replay): nothing to look up
            return
        for key in keys:
            event = self._events.pop(key, None)
            if event is not None:
                event.set()


def _spent(
    items: list[tuple[LimitRule, Bucket, Window | None]], states: list[BucketState], amounts: dict[str, int]
) -> int | None:
    """The first limit that settled usage alone (with what this request holds already) leaves too
    little for `amounts`: used up whatever other requests in flight do."""
    for index, ((rule, _, _), state) in enumerate(zip(items, states, strict=True)):
        amount = amounts[rule.measure]
        if amount > 0 and state.used + state.held + amount > rule.limit:
            return index
    return None


def _details(rule: LimitRule, window: Window | None) -> dict[str, object]:
    """What a refusal by `rule` says in its error details, whatever the reason."""
    resets_at = window.end.isoformat() if window else None
    duration = str(rule.duration) if rule.duration else None
    return {
        "limit_id": rule.id,
        "limit": rule.describe_limit(),
        "resets_at": resets_at,
        "scope": rule.scope,
        "duration": duration,
    }


def _rate_limited(
    rule: LimitRule, state: BucketState, message: str, retry_after: float, details: dict[str, object]
) -> SluiceError:
    remaining = max(0, rule.limit - state.used - state.reserved)
    details.update(measure=rule.measure, limit_value=rule.limit, remaining=remaining)
    return SluiceError(ErrorKind.POLICY_RATE_LIMITED, message, retry_after=retry_after, details=details)


def _busy(item: tuple[LimitRule, Bucket, Window | None], state: BucketState, amounts: dict[str, int]) -> SluiceError:
    rule, _, window = item
    amount = amounts[rule.measure]
    others = max(0, state.reserved - state.held)
    wait = f"{BUSY_RETRY_AFTER_S:.0f}s"
    details = _details(rule, window)
    details["busy"] = True
    if rule.measure == "cost":
        message = (
            f"Budget '{rule.id}' ({rule.scope.replace('_', ' ')} {rule.scope_id}) is not spent but busy: limit "
            f"{rule.describe_limit()}, spent ${pico_to_dollars(state.used):.4f}, "
            f"${pico_to_dollars(others):.4f} held by other requests in flight until they finish, this request "
            f"may cost up to ${pico_to_dollars(amount):.4f}. Please retry in {wait}."
        )
        return SluiceError(ErrorKind.POLICY_BUDGET_BUSY, message, retry_after=BUSY_RETRY_AFTER_S, details=details)
    message = (
        f"Rate limit '{rule.id}' ({rule.scope.replace('_', ' ')} {rule.scope_id}) is held by requests in flight: "
        f"{rule.describe_limit()}. Please retry in {wait}."
    )
    return _rate_limited(rule, state, message, BUSY_RETRY_AFTER_S, details)


def _refusal(
    item: tuple[LimitRule, Bucket, Window | None], state: BucketState, amounts: dict[str, int], now: datetime
) -> SluiceError:
    rule, _, window = item
    resets = f" It resets at {window.end.strftime('%Y-%m-%dT%H:%M:%SZ')}." if window else ""
    retry_after = window.seconds_left(now) if window else 1.0
    details = _details(rule, window)
    if rule.measure == "cost":
        need = amounts["cost"]
        message = (
            f"Budget '{rule.id}' ({rule.scope.replace('_', ' ')} {rule.scope_id}) is exhausted: limit "
            f"{rule.describe_limit()}, spent ${pico_to_dollars(state.used):.4f}, "
            f"${pico_to_dollars(state.reserved):.4f} held by requests in flight, this request may cost up to "
            f"${pico_to_dollars(need):.4f}.{resets}"
        )
        return SluiceError(ErrorKind.POLICY_BUDGET_EXCEEDED, message, retry_after=retry_after, details=details)
    message = (
        f"Rate limit '{rule.id}' ({rule.scope.replace('_', ' ')} {rule.scope_id}) reached: "
        f"{rule.describe_limit()}.{resets}"
    )
    return _rate_limited(rule, state, message, retry_after, details)


def bucket_name(rule_id: str, measure: str, window: Window | None) -> str:
    """The counter of one rule's measure in one window (the name every counter backend keys by)."""
    return f"{rule_id}:{measure}:{window.key}" if window is not None else f"{rule_id}:{measure}"


_STATIC_HEADERS: dict[Bucket, tuple[str, str | None]] = {}  # bucket -> (its limit, its reset), as header text


def _static(rule: LimitRule, bucket: Bucket, window: Window | None) -> tuple[str, str | None]:
    """What the headers say of a bucket that stays the same for its whole window, formatted once."""
    found = _STATIC_HEADERS.get(bucket)
    if found is None:
        if len(_STATIC_HEADERS) >= 4096:
            _STATIC_HEADERS.clear()  # windows roll over: forget the old ones
        limit = f"{pico_to_dollars(rule.limit):.2f}" if rule.measure == "cost" else str(rule.limit)
        reset = window.end.strftime("%Y-%m-%dT%H:%M:%SZ") if window else None
        found = _STATIC_HEADERS[bucket] = (limit, reset)
    return found


def dollars_4dp(pico: int) -> str:
    """Pico-dollars as dollars with four decimals, rounded half to even: exactly what
    `pico_to_dollars(pico).quantize(Decimal("0.0001"))` prints, in integer arithmetic."""
    units, rest = divmod(pico, 10**8)
    if rest > 5 * 10**7 or (rest == 5 * 10**7 and units % 2):
        units += 1
    sign = "-" if units < 0 else ""
    whole, frac = divmod(abs(units), 10_000)
    return f"{sign}{whole}.{frac:04d}"


# The rate-limit headers' names per measure, built once rather than as f-strings per request.
_RATE_HEADERS = {
    measure: (f"x-ratelimit-limit-{measure}", f"x-ratelimit-remaining-{measure}", f"x-ratelimit-reset-{measure}")
    for measure in ("requests", "tokens")
}


def _headers(
    items: list[tuple[LimitRule, Bucket, Window | None]], states: list[BucketState], now: datetime
) -> dict[str, str]:
    """The tightest budget's remaining dollars, and the tightest request/token limits, for callers
    that want to show them."""
    headers: dict[str, str] = {}
    tightest: dict[str, tuple[int, LimitRule, Bucket, Window | None]] = {}
    for (rule, bucket, window), state in zip(items, states, strict=True):
        left = rule.limit - state.used - state.reserved
        if left < 0:
            left = 0
        known = tightest.get(rule.measure)
        if known is None or left < known[0]:
            tightest[rule.measure] = (left, rule, bucket, window)
    cost = tightest.get("cost")
    if cost is not None:
        left, rule, bucket, window = cost
        limit, reset = _static(rule, bucket, window)
        headers["x-sluice-budget-id"] = rule.id
        headers["x-sluice-budget-limit-usd"] = limit
        headers["x-sluice-budget-remaining-usd"] = dollars_4dp(left)
        if reset is not None:
            headers["x-sluice-budget-reset"] = reset
    for measure, (limit_name, remaining_name, reset_name) in _RATE_HEADERS.items():
        found = tightest.get(measure)
        if found is not None:
            left, rule, bucket, window = found
            headers[limit_name] = _static(rule, bucket, window)[0]
            headers[remaining_name] = str(left)
            if window:
                headers[reset_name] = f"{window.seconds_left(now):.0f}s"
    return headers
