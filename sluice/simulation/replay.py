"""The replay: every logged request, oldest first, through the proposal's policy objects at the
time it was made.

Per request, in the live path's order (`sluice.engine.run`): the key (unknown, revoked, expired
keys are refused as the gateway refuses them), the routing rules and aliases (`Router.resolve`),
the provider the allowlist and the providers allow (`plan`), the price check (`Costs.price`),
then the limits (`Limits.admit_now`, the synchronous path of `admit` on in-process counters),
and settlement of the counters (`Limits.count_now`) with what the request cost: as logged when it is served as
logged, else its logged usage re-priced on the model it would go to. A refused request is not
charged, so later requests see the limits as the live path would.

What the log cannot say is not simulated: the live path reserves a worst case (from the body
size and the output limit, which the log does not keep) where the replay reserves what each
request really cost; requests are taken one after another (the log does not say which
overlapped), so concurrency limits never refuse; routing rules that read request headers see
none. Each is said in the report's warnings when the proposal relies on it.

Decisions that are pure functions of their inputs are kept per input (routing resolutions the
router says are pure, provider plans per key, model and surface), so a million requests with a
few thousand distinct keys and models cost a few thousand decisions, not a million.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sluice.core.errors import SluiceError
from sluice.core.tasks import cancel, spawn
from sluice.core.types import Operation, Usage, WireFormat
from sluice.engine.plan import plan
from sluice.engine.shapes import Inbound
from sluice.governance.allowlist import allowed_candidates
from sluice.governance.keys import check_usable
from sluice.governance.limits import Admission, NotNow
from sluice.pricing.rates import Price
from sluice.routing.resilience import CircuitBreakers
from sluice.routing.router import Resolution, RouteFacts
from sluice.simulation.policy import Policy
from sluice.simulation.report import Outcome, Report
from sluice.storage.records import LoggedRequest, VirtualKey

# A plan: (provider, its model name, the providers the allowlist would let serve the target), or
# the refusal the live path would answer.
Plan = tuple[str, str, frozenset[str]] | SluiceError


async def _next(batches: AsyncIterator[list[LoggedRequest]]) -> list[LoggedRequest] | None:
    return await anext(batches, None)


def operation_of(path: str) -> Operation:
    """What a logged request's path asked for (the edge's routes, by their path)."""
    if "count_tokens" in path or "countTokens" in path or path.endswith("/input_tokens"):
        return Operation.COUNT_TOKENS
    if "embed" in path.lower():
        return Operation.EMBED
    return Operation.GENERATE


@dataclass(slots=True)
class _KeyFacts:
    """A key as the replay uses it, with the decisions kept for it: provider plans by (target
    model, surface, path) and prices by (provider, model), each a pure function of those."""

    key: VirtualKey
    team: str | None
    customer: str | None
    developer: str  # the key's owner, else the key
    team_name: str
    plans: dict[tuple[str, str, str], Plan] = field(default_factory=dict)
    prices: dict[tuple[str, str], Price | SluiceError | None] = field(default_factory=dict)


_UNKNOWN = _KeyFacts(VirtualKey("", "", "", ""), None, None, "", "")  # neither the store nor the proposal has it


class Replay:
    def __init__(self, policy: Policy, report: Report, *, warn: bool = True) -> None:
        self.policy = policy
        self.report = report
        self._breakers = CircuitBreakers(policy.config.routing.circuit_breaker)  # all closed: no provider fails
        self._routes: dict[tuple[object, ...], Resolution] = {}
        self._known: dict[str, _KeyFacts] = {}  # key id -> what the replay keeps of it
        if warn:  # (one part of a replay split over processes says them)
            self._warn_about_gaps()

    def _warn_about_gaps(self) -> None:
        config = self.policy.config
        if any(r.max_concurrent_requests for r in config.rate_limits):
            self.report.warnings.append(
                "max_concurrent_requests is not simulated: the log does not say which requests overlapped"
            )
        if any("headers" in r.when for r in config.routing.rules):
            self.report.warnings.append(
                "routing rules that read request headers see none: the request log does not keep headers"
            )

    async def run(self, batches: AsyncIterator[list[LoggedRequest]]) -> Report:
        started = time.perf_counter()
        # The next page is read (by the database driver's thread) while this one is replayed.
        pending = spawn(_next(batches), name="simulation-read")
        try:
            while (batch := await pending) is not None:
                pending = spawn(_next(batches), name="simulation-read")
                for row in batch:
                    await self.one(row)
                await asyncio.sleep(0)  # a turn of the loop for everything else (the gateway's requests, via the API)
        finally:
            await cancel(pending)
        self.report.seconds = time.perf_counter() - started
        return self.report

    async def one(self, row: LoggedRequest) -> None:
        report = self.report
        key_id = row.virtual_key_id
        if key_id is None:
            report.skip("no key (unauthenticated)")
            return
        requested = row.requested_model or row.model
        if not requested:
            report.skip("no model")
            return
        before = row.cost_pico
        known = self._known.get(key_id)
        if known is None:
            known = self._known[key_id] = self._facts_of(key_id)
        if known is _UNKNOWN:
            report.add(row.request_id, row.ts, key_id, row.team_id or "", "refused", before, 0, "unknown_key")
            return
        key, team, customer = known.key, known.team, known.customer
        developer, team_name = known.developer, known.team_name
        self.policy.clock.at = row.ts
        try:
            check_usable(key, row.ts)
            route = await self._route(row, key, requested, team, customer)
            plan_memo = (route.model, row.surface, row.path)
            found = known.plans.get(plan_memo)
            if found is None:
                found = known.plans[plan_memo] = self._plan(key, route.model, row.surface, operation_of(row.path))
            if isinstance(found, SluiceError):
                raise found
            provider_name, model, allowed = found
            served_as_logged = model == row.model and (row.provider in allowed or row.provider == provider_name)
            if served_as_logged and row.provider is not None:
                provider_name = row.provider
            price_memo = (provider_name, model)
            if price_memo in known.prices:
                price = known.prices[price_memo]
            else:
                price = known.prices[price_memo] = self._price(key, provider_name, model)
            if isinstance(price, SluiceError):
                raise price
            tokens = row.input_tokens + row.output_tokens + row.cache_read_tokens + row.cache_write_tokens
            if served_as_logged and before > 0:
                after = before
            elif price is not None:
                usage = Usage(row.input_tokens, row.output_tokens, row.cache_read_tokens, row.cache_write_tokens)
                after = price.cost_pico(usage)
            else:
                after = 0
                if tokens:
                    report.unpriced[model] = report.unpriced.get(model, 0) + 1
            admission = self._admit(row.request_id, key, after, tokens, row.session_id)
            if isinstance(admission, NotNow):
                admission = await self.policy.limits.admit(row.request_id, key, after, tokens, row.session_id)
        except SluiceError as err:
            rule = err.details.get("limit_id") if err.details else None
            report.add(
                row.request_id, row.ts, developer, team_name, "refused", before, 0, str(rule or err.kind.value.code)
            )
            return
        self._charge(admission, row, after, tokens)
        outcome: Outcome
        if row.decision == "deny":
            outcome = "allowed"
        elif served_as_logged:
            outcome = "unchanged"
        else:
            outcome = "degraded" if after < before else "rerouted"
            change = f"{row.provider or '?'}/{row.model or requested} -> {provider_name}/{model}"
            report.reroutes[change] = report.reroutes.get(change, 0) + 1
        report.add(row.request_id, row.ts, developer, team_name, outcome, before, after)

    def _admit(
        self, request_id: str, key: VirtualKey, cost: int, tokens: int, session_id: str | None
    ) -> Admission | NotNow | None:
        try:
            return self.policy.limits.admit_now(request_id, key, cost, tokens, session_id=session_id, headers=False)
        except NotNow as not_now:
            return not_now  # a window not read yet: the awaited path seeds it

    def _charge(self, admission: Admission | None, row: LoggedRequest, cost: int, tokens: int) -> None:
        limits = self.policy.limits
        if row.decision == "error" and cost == 0:
            limits.release_now(admission)  # the live attempt failed without an answer: given back
            return
        limits.count_now(admission, cost, tokens)  # the log is the replay's ledger: no spend row to keep

    async def _route(
        self, row: LoggedRequest, key: VirtualKey, requested: str, team: str | None, customer: str | None
    ) -> Resolution:
        router = self.policy.router
        if not router.has_rules:
            return Resolution(requested)
        facts = RouteFacts(
            requested, {}, key.id, key.name, team, customer, row.client, row.session_id, row.stream, row.ts
        )
        memo = router.memo_key(facts)
        if memo is not None:
            found = self._routes.get(memo)
            if found is not None:
                return found
        limits = self.policy.limits
        route = await router.resolve(facts, lambda: limits.usage(key))
        if memo is not None:
            if len(self._routes) > 100_000:
                self._routes.clear()
            self._routes[memo] = route
        return route

    def _facts_of(self, key_id: str) -> _KeyFacts:
        key = self.policy.keys.get(key_id)
        if key is None:
            return _UNKNOWN
        team, customer = self.policy.limits.scopes_of(key)
        return _KeyFacts(key, team, customer, key.user_id or key_id, team or "")

    def _price(self, key: VirtualKey, provider: str, model: str) -> Price | SluiceError | None:
        """The model's price at that provider, or the live path's refusal of an unpriced model
        under a dollar budget (`Costs.price`)."""
        try:
            return self.policy.costs.price(key, self.policy.providers[provider], model)
        except SluiceError as err:
            return err

    def _plan(self, key: VirtualKey, model: str, surface: str, operation: Operation) -> Plan:
        providers = self.policy.providers
        try:
            wire = WireFormat(surface)
        except ValueError:
            wire = WireFormat.OPENAI_CHAT
        inbound = Inbound(wire, operation, b"", {"model": model}, {})
        try:
            provider, chosen, _ = plan(providers, self._breakers, key, inbound, model)
            allowed = allowed_candidates(key, model, lambda p, m: p in providers and providers[p].serves(m))
        except SluiceError as err:
            return err
        return provider.name, chosen.model, frozenset(c.provider for c in allowed)
