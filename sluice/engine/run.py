"""One inference call, as a fixed sequence (no hooks, no pipeline of plug-ins):

authenticate -> model name -> routing rules -> targets (the model, then its fallbacks), each
tried with retries (`targets`), each attempt (`attempt`): provider and key choice -> reserve
(`charge`, priced by `cost`) -> provider call -> the error channel (`Provider.parse_error`) or
the answer, metered: whole, or one stream loop (`stream`) -> settle -> request log and audit
record off the hot path (`record`), in `finish`.

The HTTP edge owns the sockets; the engine owns the decisions. Each piece of a request's state
has one owner (see `sluice.engine.context`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sluice.audit.auth_failures import REASONS as AUTH_REASONS
from sluice.audit.auth_failures import AuthGuard
from sluice.audit.log import AuditLog
from sluice.audit.recorder import RequestRecorder
from sluice.core.context import Attempt
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.model_names import MAX_LENGTH, check_model_name
from sluice.engine import attempt as attempts
from sluice.engine.context import RequestContext
from sluice.engine.cost import Costs, vendor_of
from sluice.engine.plan import plan
from sluice.engine.record import entry_of, request_kind, request_summary
from sluice.engine.shapes import Inbound, Outcome
from sluice.engine.stream import Stream
from sluice.engine.targets import Targets
from sluice.governance.allowlist import Candidate
from sluice.governance.keys import KeyCache, credential_from
from sluice.governance.limits import Limits
from sluice.guardrails.service import Guardrails
from sluice.observability.observer import Observer
from sluice.pricing.table import PriceTable
from sluice.providers.base import Provider, ProviderError, ProviderKey
from sluice.routing.resilience import CircuitBreakers
from sluice.routing.router import Resolution, RouteFacts, Router
from sluice.sessions.runaway import Runaway
from sluice.sessions.stops import Stops, refusal
from sluice.settings import RoutingConfig
from sluice.storage.records import AuditRecord, VirtualKey

log = logging.getLogger("sluice.engine")


class Engine:
    def __init__(
        self,
        keys: KeyCache,
        providers: dict[str, Provider],
        prices: PriceTable,
        recorder: RequestRecorder,
        limits: Limits,
        *,
        router: Router | None = None,
        routing: RoutingConfig | None = None,
        audit: AuditLog | None = None,
        default_max_tokens: int = 4096,
        stream_blocks: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.audit = audit
        routing = routing or RoutingConfig()
        self.router = router or Router(routing)
        self.breakers = CircuitBreakers(routing.circuit_breaker)
        self.targets = Targets(routing.retries, rng)
        self.keys = keys
        self.providers = providers
        self.limits = limits
        self.prices = prices
        self.costs = Costs(prices, limits, default_max_tokens, stream_blocks)
        self.recorder = recorder
        # Set by the composition root when the MCP gateway runs: takes the MCP tools the caller's
        # agent session called since its previous LLM call, for this call's request log entry.
        self.session_tools: Callable[[str, str | None], tuple[str, ...]] | None = None
        # Set by the composition root: throttles and records (counted) authentication failures.
        self.guard: AuthGuard | None = None
        # Set by the composition root: times and traces provider calls, takes finished requests' metrics.
        self.observer = Observer()
        self.guardrails: Guardrails | None = None  # set by the composition root (sluice.guardrails)
        self.stops: Stops | None = None  # the kill switch (sluice.sessions.stops), set by the composition root
        self.runaway: Runaway | None = None  # runaway detection (sluice.sessions.runaway), likewise

    def reconfigure(self, providers: dict[str, Provider], router: Router, routing: RoutingConfig) -> None:
        """A live reload: the new providers, routing rules, retry and circuit breaker settings,
        swapped at once (no await) so a request sees either the old set or the new one. The
        breakers' states carry over."""
        self.providers = providers
        self.router = router
        self.targets.retry = routing.retries
        self.breakers.configure(routing.circuit_breaker)

    async def authenticate(self, ctx: RequestContext, headers: Mapping[str, str]) -> VirtualKey:
        if ctx.key is not None:  # the edge authenticated before reading the body
            return ctx.key
        secret = credential_from(headers)

        async def attempt(cached_only: bool) -> VirtualKey:
            return await self.keys.authenticate(secret, cached_only=cached_only)

        try:
            if self.guard is None:
                key = await attempt(False)
            else:
                key = await self.guard.screen(ctx.surface.value, ctx.address, attempt)
        except SluiceError as err:
            if self.guard is not None and (err.kind in AUTH_REASONS or err.kind is ErrorKind.POLICY_RATE_LIMITED):
                ctx.audited = True  # the guard's counted record stands for this one
            raise
        ctx.key = key
        return key

    def plan(
        self, key: VirtualKey, inbound: Inbound, model: str, tried_keys: set[str] | None = None
    ) -> tuple[Provider, Candidate, ProviderKey | None]:
        return plan(self.providers, self.breakers, key, inbound, model, tried_keys)

    async def run(self, ctx: RequestContext, inbound: Inbound) -> Outcome:
        # The edge authenticated before reading the body; no coroutine to learn that again.
        key = ctx.key if ctx.key is not None else await self.authenticate(ctx, inbound.headers)
        stops = self.stops
        if stops is not None and stops.any and (stop := stops.check(key, ctx.session_id)) is not None:
            raise refusal(stop)
        if self.runaway is not None and self.runaway.rules:
            await self.runaway.on_request(key, ctx.session_id, inbound.doc)  # raises when it pauses the session
        requested = inbound.model or inbound.doc.get("model")
        if not isinstance(requested, str) or not requested:
            raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, "The request needs a 'model' string.")
        ctx.requested_model = requested[:MAX_LENGTH]  # logged even when refused, cut short
        check_model_name(requested)  # untrusted: it may reach a URL path
        ctx.stream = inbound.stream if inbound.stream is not None else inbound.doc.get("stream") is True
        if self.audit is not None and self.audit.captures(key.id, ctx.team_id):
            ctx.capture, ctx.captured_request = True, inbound.body
        if self.guardrails is not None and (guard := self.guardrails.start(key, ctx.session_id)) is not None:
            ctx.guardrail = guard  # set first: a block is recorded too
            inbound.body = guard.request_body(inbound.doc, inbound.body)  # raises on block
        route = await self._route(ctx, key, inbound, requested) if self.router.has_rules else Resolution(requested)
        targets = [route.model, *route.fallbacks, *key.fallbacks]
        if len(targets) > 1:
            targets = list(dict.fromkeys(targets))
        index, outcome = await self.targets.run(self, ctx, inbound, key, targets)
        if stops is not None and isinstance(outcome.chunks, Stream):
            stops.watch(outcome.chunks, key, ctx.session_id)  # a stop thrown now ends it (until `finish`)
            ctx.stream_loop = outcome.chunks
        if route.steps:
            outcome.headers["x-sluice-route"] = route.header()
            outcome.headers["x-sluice-model"] = route.model
        if index:
            outcome.headers["x-sluice-fallback"] = targets[index]
        return outcome

    async def _route(self, ctx: RequestContext, key: VirtualKey, inbound: Inbound, model: str) -> Resolution:
        if not self.router.has_rules:
            return Resolution(model)
        team, customer = self.limits.scopes_of(key)
        facts = RouteFacts(
            model,
            inbound.headers,
            key.id,
            key.name,
            team,
            customer,
            ctx.client,
            ctx.session_id,
            ctx.stream,
            datetime.now(UTC),
        )
        route = await self.router.resolve(facts, lambda: self.limits.usage(key))
        if route.steps:
            ctx.route = route.header()
        return route

    @staticmethod
    def _outcome_of(err: SluiceError) -> str:
        return f"upstream {err.status}" if isinstance(err, ProviderError) and err.reply is not None else err.kind.name

    def _close_attempt(self, ctx: RequestContext, target: str, err: SluiceError) -> None:
        """Says in the request's record how its last attempt ended."""
        if ctx.attempts and ctx.attempts[-1].outcome is None:
            last = ctx.attempts[-1]
            last.outcome, last.status = self._outcome_of(err), err.upstream_status
        else:  # refused before any provider was called (allowlist, routing, a limit)
            ctx.attempts.append(Attempt(target, outcome=self._outcome_of(err), status=err.upstream_status))

    # One attempt (sluice.engine.attempt), as a method: no extra coroutine per attempt.
    attempt = attempts.attempt

    async def abandon(self, ctx: RequestContext, target: str, err: SluiceError) -> None:
        """An attempt failed and another follows: give back its reservation."""
        self._close_attempt(ctx, target, err)
        if ctx.charge is not None:
            await ctx.charge.release()

    async def give_up(self, ctx: RequestContext, err: SluiceError) -> Outcome:
        """The failure is the request's answer: the provider's own error answer when it is fit for
        the caller (charged like any answer), else raised for the edge to render."""
        charge = ctx.charge
        if ctx.attempts and ctx.attempts[-1].outcome is None:
            self._close_attempt(ctx, ctx.attempts[-1].model, err)
        if isinstance(err, ProviderError) and err.reply is not None:
            reply = err.reply
            ctx.status, ctx.decision, ctx.reason = reply.status, "error", f"provider answered {reply.status}"
            await self.settle(ctx)
            return Outcome(reply.status, reply.content_type, reply.headers, body=reply.body, failure=err.failure)
        if charge is not None and charge.held and err.kind.fault == "policy":
            # A stream cut by its budget before its first byte reached the caller: the provider
            # generated it all the same, so it is billed (settled in `finish`), not given back.
            raise err
        if charge is not None:
            await charge.release()
        raise err

    async def settle(self, ctx: RequestContext) -> None:
        """Charges the request's real usage to every limit (once; later calls do nothing) and
        seals its audit record while the answer is still held back. The record is handed to the
        audit log before the ledger row is, so both go into one commit (one transaction a
        request, not two in turn); neither is awaited before both are queued."""
        charge = ctx.charge
        if charge is None or not charge.held:
            return
        if ctx.model and not ctx.cost_pico:
            ctx.cost_pico = self._cost(ctx)
        sealing = self._seal(ctx)
        try:
            await charge.settle(ctx.cost_pico, ctx.usage.total)
        except SluiceError:
            ctx.decision, ctx.reason = "error", "spend could not be recorded"
            if sealing is not None:
                # The record sealed beside it says the answer was released; it was not. `finish`
                # seals the request again as it ended (a later record of the same request id).
                with contextlib.suppress(Exception):
                    await sealing
                ctx.audited = False
            raise
        await self._sealed(ctx, sealing, refuse=True)

    def _cost(self, ctx: RequestContext) -> int:
        provider = self.providers.get(ctx.provider or "")
        return self.costs.answer_cost(ctx, vendor_of(provider) if provider is not None else None)

    async def _audit(self, ctx: RequestContext, *, refuse: bool) -> None:
        """Seals the request's record into the audit log. While the answer is still held back
        (`refuse`), a record that cannot be made durable stops the answer, unless the config opts out."""
        await self._sealed(ctx, self._seal(ctx), refuse=refuse)

    def _seal(self, ctx: RequestContext) -> asyncio.Future[AuditRecord] | None:
        """Queues the request's audit record (once), or None when there is none to write."""
        if self.audit is None or not self.audit.enabled or ctx.audited:
            return None
        ctx.audited = True
        try:
            summary = request_summary(ctx, self.audit.capture_limit)
            return self.audit.submit(request_kind(ctx), ctx.virtual_key_id or "anonymous", summary)
        except Exception as exc:  # a summary that cannot be made: as a record that cannot be stored
            failed: asyncio.Future[AuditRecord] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed

    async def _sealed(self, ctx: RequestContext, sealing: asyncio.Future[AuditRecord] | None, *, refuse: bool) -> None:
        if sealing is None:
            return
        try:
            await sealing
        except Exception:
            log.exception("audit record of %s could not be written", ctx.request_id)
            if refuse and self.audit is not None and self.audit.refuse_unrecorded:
                raise SluiceError(
                    ErrorKind.GATEWAY_INTERNAL,
                    "The request could not be recorded in the audit log, so it is not served. Try again shortly.",
                ) from None

    async def finish(self, ctx: RequestContext) -> None:
        """Settle what is not settled yet, price the request and record it. Never raises."""
        try:
            if ctx.stream_loop is not None and self.stops is not None:
                self.stops.unwatch(ctx.stream_loop)
            try:
                await self.settle(ctx)
            except SluiceError:
                pass  # the caller has been answered already; the failure is logged
            if ctx.model and not ctx.cost_pico:
                ctx.cost_pico = self._cost(ctx)
            await self._audit(ctx, refuse=False)
            if self.runaway is not None and ctx.key is not None and ctx.cost_pico:
                await self.runaway.on_settled(ctx.key, ctx.session_id, ctx.cost_pico, ctx.request_id)
            if ctx.guardrail is not None:  # its audit events (sealed together) and the alerts of `alert` rules
                await ctx.guardrail.record(ctx.request_id, ctx.virtual_key_id or "anonymous", self.audit)
            tools: tuple[str, ...] = ()
            if self.session_tools is not None and ctx.key is not None and ctx.decision == "allow":
                tools = self.session_tools(ctx.key.id, ctx.session_id)
            entry = entry_of(ctx, tools)
            self.recorder.record(entry)
            self.observer.finished(ctx, entry)
        except Exception:
            log.exception("could not record request %s", ctx.request_id)
