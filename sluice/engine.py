"""One inference call: authenticate, check policy, route, call the provider, meter the answer.

The HTTP edge owns the sockets; the engine owns the decisions. Per request it runs, in order:
authentication -> model allowlist -> provider choice -> provider key choice -> upstream call ->
usage metering -> cost -> request log (off the hot path).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice.audit.auth_failures import REASONS as AUTH_REASONS
from sluice.audit.auth_failures import AuthGuard
from sluice.audit.events import request_kind, request_summary
from sluice.audit.log import AuditLog
from sluice.audit.recorder import RequestRecorder
from sluice.core.canonical import ChatRequest, Failure
from sluice.core.context import RequestContext
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.model_names import MAX_LENGTH, check_model_name, check_url_model
from sluice.core.types import Operation, WireFormat
from sluice.formats.json_body import encode_body
from sluice.governance.allowlist import Candidate, allowed_candidates
from sluice.governance.keys import KeyCache, credential_from
from sluice.governance.ledger_writer import SpendNotDurable
from sluice.governance.limits import Limits
from sluice.metering import (
    CHARS_PER_TOKEN,
    StreamObserver,
    entry_of,
    estimated_usage,
    first_piece,
    redact_provider_secrets,
    seconds_of,
    stream_observer,
    usage_of,
)
from sluice.pricing.demand import demand_of
from sluice.pricing.table import Price, PriceTable
from sluice.providers.base import Provider, ProviderCall, ProviderKey, ProviderReply
from sluice.routing.resilience import RETRYABLE_STATUSES, CircuitBreakers, backoff_delay
from sluice.routing.router import Resolution, RouteFacts, Router
from sluice.routing.weighted import choose
from sluice.settings import RoutingConfig
from sluice.storage.records import VirtualKey
from sluice.translation import bridge_for, count_body, local_count, reaches

log = logging.getLogger("sluice.engine")
# Provider types that cannot work without a credential (cloud ones list theirs as keys).
_KEYED_TYPES = {"anthropic", "openai", "gemini", "azure", "bedrock", "vertex"}


@dataclass(slots=True)
class Inbound:
    wire: WireFormat
    operation: Operation
    body: bytes
    doc: dict[str, Any]
    headers: Mapping[str, str]
    query: str = ""
    model: str | None = None  # when the model travels in the URL (Gemini), not in the body
    stream: bool | None = None  # likewise for streaming
    canonical: ChatRequest | None = None  # decoded once, when some attempt needs translating


@dataclass(slots=True)
class Outcome:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None
    failure: Failure | None = None  # a translated upstream error: the edge renders it for the caller


def first_output_block(output_tokens: int, stream: bool, block: int) -> int:
    """The output a request reserves up front. A stream reserves at most one block and extends
    block by block while it runs (`Engine._extend_or_cut`), so a large `max_tokens` (coding
    agents send 32,000 and more) does not hold a budget it will mostly not use; an answer that
    is not streamed cannot be cut, so it reserves all of it."""
    return min(output_tokens, block) if stream else output_tokens


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
    ) -> None:
        self.audit = audit
        routing = routing or RoutingConfig()
        self.router = router or Router(routing)
        self.retry = routing.retries
        self.breaker_config = routing.circuit_breaker
        self.breakers = CircuitBreakers(routing.circuit_breaker)
        self._rng = random.Random()
        self.keys = keys
        self.providers = providers
        self.prices = prices
        self.recorder = recorder
        self.limits = limits
        self.default_max_tokens = default_max_tokens
        self.stream_blocks = stream_blocks  # governance.stream_reservation == "block"
        # Set by the composition root when the MCP gateway runs: takes the MCP tools the caller's
        # agent session called since its previous LLM call, for this call's request log entry.
        self.session_tools: Callable[[str, str | None], tuple[str, ...]] | None = None
        # Set by the composition root: throttles and records (counted) authentication failures.
        self.guard: AuthGuard | None = None

    async def authenticate(self, ctx: RequestContext, headers: Mapping[str, str]) -> VirtualKey:
        if isinstance(ctx.virtual_key, VirtualKey):  # the edge authenticated before reading the body
            return ctx.virtual_key
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
        ctx.virtual_key = key
        ctx.virtual_key_id, ctx.virtual_key_name = key.id, key.name
        ctx.team_id, ctx.customer_id = key.team_id, key.customer_id
        return key

    def _serves(self, provider: str, model: str) -> bool:
        p = self.providers.get(provider)
        return p is not None and p.serves(model)

    def plan(
        self, key: VirtualKey, inbound: Inbound, model: str, tried_keys: set[str] | None = None
    ) -> tuple[Provider, Candidate, ProviderKey | None]:
        candidates = allowed_candidates(key, model, self._serves)
        configured = [c for c in candidates if c.provider in self.providers]
        if not configured:
            names = ", ".join(sorted({c.provider for c in candidates}))
            raise SluiceError(
                ErrorKind.GATEWAY_NOT_CONFIGURED,
                f"Model '{model}' is allowed through provider {names}, which is not configured in this gateway.",
            )
        reachable = [
            c
            for c in configured
            if reaches(self.providers[c.provider], c.model, inbound.wire, inbound.operation, inbound.doc)
        ]
        if not reachable:
            names = ", ".join(sorted({c.provider for c in configured}))
            raise SluiceError(
                ErrorKind.GATEWAY_UNSUPPORTED,
                f"Model '{model}' is served here by {names}, which cannot be reached through the "
                f"{inbound.wire.value} API. Call it through that provider's own API surface.",
            )
        # A provider that needs a credential and has none is skipped while another can serve.
        usable = [c for c in reachable if self._has_credentials(self.providers[c.provider])]
        if not usable:
            names = ", ".join(sorted({c.provider for c in reachable}))
            raise SluiceError(
                ErrorKind.GATEWAY_NOT_CONFIGURED,
                f"Provider {names} has no API key configured in the gateway. Ask your platform team to add one.",
            )
        chosen = choose(usable, lambda c: c.weight)
        provider = self.providers[chosen.provider]
        if not provider.keys:
            return provider, chosen, None
        # Rotate away from keys this request already tried, and skip keys whose breaker is open.
        now = time.monotonic()
        fresh = [k for k in provider.keys if k.name not in (tried_keys or ())] or list(provider.keys)
        open_keys = [k for k in fresh if self.breakers.allows(f"{provider.name}/{k.name}", now)]
        if not open_keys:
            raise SluiceError(
                ErrorKind.PROVIDER_UNREACHABLE,
                f"Provider '{provider.name}' is failing; its circuit breaker is open. Try again shortly.",
                retry_after=self.breaker_config.open_seconds,
            )
        return provider, chosen, choose(open_keys, lambda k: k.weight)

    @staticmethod
    def _has_credentials(provider: Provider) -> bool:
        return bool(provider.keys) or provider.type not in _KEYED_TYPES

    async def run(self, ctx: RequestContext, inbound: Inbound) -> Outcome:
        key = await self.authenticate(ctx, inbound.headers)
        requested = inbound.model or inbound.doc.get("model")
        if not isinstance(requested, str) or not requested:
            raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, "The request needs a 'model' string.")
        ctx.requested_model = requested[:MAX_LENGTH]  # logged even when refused, cut short
        check_model_name(requested)  # untrusted: it may reach a URL path
        ctx.stream = inbound.stream if inbound.stream is not None else inbound.doc.get("stream") is True
        if self.audit is not None and self.audit.captures(key.id, ctx.team_id):
            ctx.capture, ctx.captured_request = True, inbound.body
        route = await self._route(ctx, key, inbound, requested)
        targets = list(dict.fromkeys([route.model, *route.fallbacks, *key.fallbacks]))
        route_headers = {"x-sluice-route": route.header(), "x-sluice-model": route.model} if route.steps else {}
        for index, target in enumerate(targets):
            outcome = await self._try_target(
                ctx, inbound, key, target, last_target=index == len(targets) - 1, primary=index == 0
            )
            if outcome is not None:
                outcome.headers.update(route_headers)
                if index:
                    outcome.headers["x-sluice-fallback"] = target
                return outcome
        raise AssertionError("the last target always answers or raises")

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

    async def _try_target(
        self, ctx: RequestContext, inbound: Inbound, key: VirtualKey, target: str, *, last_target: bool, primary: bool
    ) -> Outcome | None:
        """Tries one target, with retries. Returns None to move on to the next target."""
        tried_keys: set[str] = set()
        for attempt in range(1, self.retry.attempts + 1):
            retries_left = attempt < self.retry.attempts
            try:
                outcome = await self._attempt(ctx, inbound, key, target, tried_keys)
            except SluiceError as err:
                if err.kind in (ErrorKind.POLICY_BUDGET_EXCEEDED, ErrorKind.POLICY_BUDGET_BUSY) and ctx.admitted:
                    # A stream cut before its first byte reached the caller: the provider generated
                    # it all the same, so it is billed (settled), not given back.
                    ctx.attempts[-1].update(outcome=err.kind.name)
                    await self.settle(ctx)
                    raise
                await self._abandon(ctx, target, err.kind.name, err.upstream_status)
                if primary and err.kind.fault in ("caller", "policy"):
                    raise  # the request itself is refused: no fallback may change that
                # A fallback target the request cannot be translated for (CALLER_UNTRANSLATABLE,
                # a fallback kind) is passed over for the next one; only the last one refuses.
                if not err.kind.fallback and err.kind.fault != "policy":
                    raise
                if last_target and (not err.kind.retryable or not retries_left):
                    raise
                if err.kind.retryable and retries_left and await self._pause(attempt, err.retry_after):
                    continue
                return None
            if outcome.status not in RETRYABLE_STATUSES or (last_target and not retries_left):
                return outcome
            retry_after = seconds_of(outcome.headers.get("retry-after"))
            await self._abandon(ctx, target, f"upstream {outcome.status}", outcome.status)
            if retries_left and await self._pause(attempt, retry_after):
                continue
            if last_target:
                return outcome
            return None
        return None

    async def _pause(self, attempt: int, retry_after: float | None) -> bool:
        delay = backoff_delay(self.retry, attempt, retry_after, self._rng)
        if delay is None:
            return False
        await asyncio.sleep(delay)
        return True

    async def _abandon(self, ctx: RequestContext, target: str, reason: str, status: int | None) -> None:
        """An attempt failed: give back its reservation and say so in the request's record."""
        if ctx.attempts and ctx.attempts[-1].get("outcome") is None:
            ctx.attempts[-1].update(outcome=reason, status=status)
        else:
            ctx.attempts.append({"model": target, "outcome": reason, "status": status})
        await self.limits.release(ctx.admission)
        ctx.admission, ctx.admitted = None, False

    async def _attempt(
        self, ctx: RequestContext, inbound: Inbound, key: VirtualKey, model: str, tried_keys: set[str]
    ) -> Outcome:
        provider, chosen, pkey = self.plan(key, inbound, model, tried_keys)
        breaker = f"{provider.name}/{pkey.name if pkey else '-'}"
        # Only the key really used takes a half-open breaker's probe slot; an attempt that ends
        # without a verdict on the key (refused by a budget, cancelled, a 429) gives it back.
        probe = self.breakers.claim(breaker, time.monotonic()) if pkey is not None else 0
        try:
            return await self._attempt_with(ctx, inbound, key, provider, chosen, pkey, tried_keys, breaker)
        finally:
            self.breakers.give_back(breaker, probe)

    async def _attempt_with(
        self,
        ctx: RequestContext,
        inbound: Inbound,
        key: VirtualKey,
        provider: Provider,
        chosen: Candidate,
        pkey: ProviderKey | None,
        tried_keys: set[str],
        breaker: str,
    ) -> Outcome:
        ctx.provider, ctx.model = provider.name, chosen.model
        if provider.model_in_url:  # the name after aliases and routing, as this provider gets it
            check_url_model(chosen.model, provider.name)
        ctx.provider_key_name = pkey.name if pkey else None
        target, bridge, inbound.canonical = bridge_for(provider, chosen.model, inbound, inbound.canonical)
        if target is None:  # nothing to ask the provider: answer a documented local estimate, free
            assert inbound.canonical is not None
            ctx.attempts.append({"provider": provider.name, "model": chosen.model, "outcome": "estimated"})
            ctx.status = 200
            body = count_body(inbound.wire, local_count(inbound.canonical))
            return Outcome(200, "application/json", {"x-sluice-token-count": "estimate"}, body=body)
        cost, tokens = self.worst_case(ctx, inbound, chosen.model)
        ctx.admission = await self.limits.admit(f"{ctx.request_id}.{len(ctx.attempts)}", key, cost, tokens)
        ctx.admitted = True
        attempt: dict[str, Any] = {
            "provider": provider.name,
            "key": ctx.provider_key_name,
            "model": chosen.model,
            "outcome": None,
        }
        if bridge is not None:
            attempt["translated"] = f"{inbound.wire.value}->{target.value}"  # the request log says so
        ctx.attempts.append(attempt)
        if pkey is not None:
            tried_keys.add(pkey.name)

        hide_usage = False
        if bridge is not None:
            body, doc = bridge.body(chosen.model, ctx.stream)
            if bridge.dropped:  # optional vendor tools the target cannot run: said, never silent
                attempt["dropped_tools"] = list(bridge.dropped)
        else:
            doc = dict(inbound.doc)
            changed = inbound.model is None and chosen.model != inbound.doc.get("model")
            if changed:
                doc["model"] = chosen.model
            if ctx.stream and inbound.wire is WireFormat.OPENAI_CHAT:
                # Usage only arrives in a stream when asked for; ask on the caller's behalf so the
                # request can be metered, and take the extra chunk out again on the way back.
                opts = doc.get("stream_options")
                opts = opts if isinstance(opts, dict) else {}
                if not opts.get("include_usage"):
                    doc["stream_options"] = {**opts, "include_usage": True}
                    hide_usage = changed = True
            body = encode_body(doc) if changed else inbound.body

        call = ProviderCall(
            ctx,
            target,
            inbound.operation,
            chosen.model,
            body,
            doc,
            inbound.headers,
            inbound.query,
            ctx.stream,
            pkey,
        )
        now = time.monotonic()
        try:
            reply = await provider.send(call)
        except SluiceError as err:
            if err.kind.fault == "provider":
                self.breakers.failed(breaker, now)
            raise
        attempt["status"] = reply.status
        if reply.status >= 500:
            self.breakers.failed(breaker, now)
        elif reply.status != 429:
            self.breakers.succeeded(breaker)
        outcome = self._outcome(ctx, target, inbound.operation, provider, reply, hide_usage)
        if bridge is not None:
            bridge.carry(outcome, ctx.request_id, chosen.model)
            if bridge.dropped:
                outcome.headers["x-sluice-dropped-tools"] = ",".join(bridge.dropped)
        if outcome.chunks is not None:
            # Wait for the stream's first piece here: until then nothing reached the caller, so a
            # failure can still be retried or fall back.
            outcome.chunks = await first_piece(outcome.chunks, provider, ctx)
        if outcome.status < 400:
            attempt["outcome"] = "ok"
        if ctx.admission is not None:
            outcome.headers.update(ctx.admission.headers)
        if ctx.capture and outcome.body is not None:
            ctx.captured_response = outcome.body
        if outcome.chunks is None and outcome.status not in RETRYABLE_STATUSES:
            await self.settle(ctx)  # durable before the caller sees the answer
        return outcome

    def worst_case(self, ctx: RequestContext, inbound: Inbound, model: str) -> tuple[int, int]:
        """What the request can consume: (pico-dollars, tokens). Input is estimated generously at
        one token per three bytes of body; output is the request's largest output limit in any
        spelling (at least its thinking budget), or `default_max_tokens` when it names none (a
        longer stream then has to extend its reservation), for each choice it asks for; plus the
        server-side searches it may run, at the service tier it asks for; input stored at the
        provider that the body only refers to counts as the model's whole context window (see
        pricing.demand)."""
        input_tokens = len(inbound.body) // 3 + 1
        output_tokens, searches, tier, speed = 0, 0, "", ""
        price = self._price(ctx, model)
        if inbound.operation is Operation.GENERATE:
            demand = demand_of(inbound.doc)
            input_tokens = demand.input_tokens(input_tokens, price.context_window if price else None)
            output_tokens = demand.output_tokens(self.default_max_tokens)
            output_tokens = first_output_block(
                output_tokens, ctx.stream and self.stream_blocks, self.default_max_tokens
            )
            searches, tier, speed = demand.searches, demand.service_tier, demand.speed
            ctx.requested_tier = (tier, speed)
            if demand.background and self._dollar_budget(ctx):
                raise SluiceError(
                    ErrorKind.CALLER_BAD_REQUEST,
                    "Background responses ('background': true) answer before the work is done, without "
                    "usage, so they cannot be charged to a budget. Send the request without 'background' "
                    "(stream it instead, if it is long).",
                )
        ctx.input_estimate, ctx.output_allowance = input_tokens, output_tokens
        cost = (
            price.worst_case_pico(input_tokens, output_tokens, searches=searches, service_tier=tier, speed=speed)
            if price
            else 0
        )
        ctx.reserved_pico = cost
        return cost, input_tokens + output_tokens

    def _dollar_budget(self, ctx: RequestContext) -> bool:
        key = ctx.virtual_key
        return key is not None and any(rule.measure == "cost" for rule in self.limits.rules_for(key))

    def _vendor(self, ctx: RequestContext) -> str | None:
        provider = self.providers.get(ctx.provider or "")
        if provider is None:
            return None
        # An OpenAI-compatible vendor is known to the price data by its name (groq, mistral, ...).
        return provider.name if provider.type == "openai_compatible" else provider.type

    def _price(self, ctx: RequestContext, model: str) -> Price | None:
        """The model's price; refuses (403) a model nothing prices when a dollar budget applies,
        unless `pricing.unpriced` allows it or gives a default price."""
        price = self.prices.price_for(model, self._vendor(ctx))
        if price is None and self.prices.unpriced_policy == "refuse" and self._dollar_budget(ctx):
            raise SluiceError(
                ErrorKind.POLICY_UNPRICED,
                f"Model '{model}' has no price in this gateway, and a dollar budget applies to this key, "
                "so the request is refused rather than charged $0. Ask your platform team to price it under "
                "'pricing.overrides' in the gateway config (or to set 'pricing.unpriced').",
                details={"model": model},
            )
        return price

    async def _extend_or_cut(self, ctx: RequestContext, observer: StreamObserver) -> None:
        """The stream outgrew its reservation: reserve another block, or stop it here and bill
        what was generated so far."""
        block = self.default_max_tokens
        price = self.prices.price_for(ctx.model or "", self._vendor(ctx))
        try:
            tier, speed = ctx.requested_tier
            cost = price.output_pico(ctx.input_estimate, block, service_tier=tier, speed=speed) if price else 0
            await self.limits.extend(ctx.admission, cost, block)
        except SluiceError:
            ctx.usage = estimated_usage(ctx, observer)
            raise
        ctx.output_allowance += block

    async def settle(self, ctx: RequestContext) -> None:
        """Charges the request's real usage to every limit; idempotent."""
        key = ctx.virtual_key
        if ctx.settled or not ctx.admitted or key is None:
            return
        ctx.settled = True
        if ctx.model and not ctx.cost_pico:
            ctx.cost_pico = self._cost(ctx)
        row = self.limits.spend_row(
            ctx.admission,
            ctx.request_id,
            key,
            ctx.cost_pico,
            ctx.usage.total,
            datetime.fromtimestamp(ctx.started_unix, UTC),
        )
        try:
            await self.limits.settle(ctx.admission, row)
        except SpendNotDurable:
            # Neither the store nor the local journal holds the cost: the answer is not served
            # (its last byte is still held back), rather than served unbilled.
            log.error("settlement of %s is durable nowhere; its answer is refused", ctx.request_id)
            ctx.decision, ctx.reason = "error", "spend could not be recorded"
            raise SluiceError(
                ErrorKind.GATEWAY_INTERNAL,
                "The request's cost could not be recorded, so the answer is not served. Try again shortly.",
            ) from None
        except Exception:
            log.exception("settlement of %s failed", ctx.request_id)
        await self._audit(ctx, refuse=True)

    def _cost(self, ctx: RequestContext) -> int:
        """The answer's cost, for the model the provider says served it. A successful answer that
        reported no usage at all is charged what its reservation held, never $0."""
        assert ctx.model is not None
        if ctx.usage_missing:
            return ctx.reserved_pico
        served = ctx.usage.served_model
        if served and served != ctx.model and ctx.attempts:
            ctx.attempts[-1]["served_model"] = served[:200]  # the request log says what was priced
        tier, speed = ctx.requested_tier
        if tier and not ctx.usage.service_tier:  # the answer did not say: bill the tier asked for
            ctx.usage.service_tier = tier
        return self.prices.cost_pico(ctx.model, ctx.usage, self._vendor(ctx), speed=speed)

    async def _audit(self, ctx: RequestContext, *, refuse: bool) -> None:
        """Seals the request's record into the audit log. While the answer is still held back
        (`refuse`), a record that cannot be made durable stops the answer, unless the config opts out."""
        if self.audit is None or not self.audit.enabled or ctx.audited:
            return
        ctx.audited = True
        try:
            summary = request_summary(ctx, self.audit.capture_limit)
            await self.audit.append(request_kind(ctx), ctx.virtual_key_id or "anonymous", summary)
        except Exception:
            log.exception("audit record of %s could not be written", ctx.request_id)
            if refuse and self.audit.refuse_unrecorded:
                raise SluiceError(
                    ErrorKind.GATEWAY_INTERNAL,
                    "The request could not be recorded in the audit log, so it is not served. Try again shortly.",
                ) from None

    def _outcome(
        self,
        ctx: RequestContext,
        wire: WireFormat,
        operation: Operation,
        provider: Provider,
        reply: ProviderReply,
        hide_usage: bool,
    ) -> Outcome:
        """The provider's reply, metered in the provider's own format `wire`."""
        ctx.status = reply.status
        if reply.status >= 400:
            body = reply.body or b""
            if reply.status in (401, 403):
                what = (
                    f"the gateway's credential '{ctx.provider_key_name}'"
                    if ctx.provider_key_name
                    else ("a request without credential (none is configured for it)")
                )
                raise SluiceError(
                    ErrorKind.PROVIDER_AUTH,
                    f"Provider '{provider.name}' rejected {what}. Ask your platform team to check it.",
                    upstream_status=reply.status,
                )
            ctx.decision, ctx.reason = "error", f"provider answered {reply.status}"
            return Outcome(
                reply.status, reply.content_type, reply.headers, body=redact_provider_secrets(body, provider)
            )
        if reply.chunks is None:
            assert reply.body is not None
            if operation is not Operation.COUNT_TOKENS:
                ctx.usage = usage_of(wire, reply.body)
                ctx.usage_missing = operation is Operation.GENERATE and not ctx.usage.reported
            return Outcome(reply.status, reply.content_type, reply.headers, body=reply.body)
        observer = stream_observer(wire, hide_usage)
        observer.count_output = ctx.admission is not None and self.limits.guards_output(ctx.admission)
        if ctx.capture:
            observer.count_output = True
            observer.captured = ctx.captured_stream = []
        return Outcome(
            reply.status,
            reply.content_type,
            reply.headers,
            chunks=self._metered(ctx, reply.chunks, observer, time.monotonic() + provider.timeouts.total),
        )

    async def _metered(
        self, ctx: RequestContext, chunks: AsyncIterator[bytes], observer: StreamObserver, deadline: float
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                if time.monotonic() > deadline:
                    raise SluiceError(ErrorKind.PROVIDER_TIMEOUT, f"provider {ctx.provider} took too long in all")
                out = observer.feed(chunk)
                if (
                    ctx.admission is not None
                    and observer.count_output
                    and observer.output_chars // CHARS_PER_TOKEN >= ctx.output_allowance
                    and self.limits.guards_output(ctx.admission)
                ):
                    await self._extend_or_cut(ctx, observer)  # raises to cut: this chunk is not sent
                if observer.completed and ctx.admission is not None and not ctx.settled:
                    # Hold the stream's last event until its cost is durable in the ledger.
                    ctx.usage = observer.usage if observer.usage.reported else estimated_usage(ctx, observer)
                    await self.settle(ctx)
                if out:
                    yield out
                if observer.completed:
                    # Resumed after the last event: the caller has it (the edge sent it before asking
                    # for more), however long the provider then holds its connection open.
                    ctx.answered = True
        finally:
            # Whatever was streamed is billed, even when the stream broke or the caller left.
            if not ctx.settled:
                whole = observer.completed and observer.usage.reported
                ctx.usage = observer.usage if whole else estimated_usage(ctx, observer)
            if observer.error and ctx.decision == "allow":
                ctx.decision, ctx.reason = "error", "provider sent an in-stream error"

    async def finish(self, ctx: RequestContext) -> None:
        """Settle what is not settled yet, price the request and record it. Never raises."""
        try:
            try:
                await self.settle(ctx)
            except SluiceError:
                pass  # the caller has been answered already; the failure is logged
            if ctx.model and not ctx.cost_pico:
                ctx.cost_pico = self._cost(ctx)
            await self._audit(ctx, refuse=False)
            tools: tuple[str, ...] = ()
            if self.session_tools is not None and ctx.virtual_key_id and ctx.decision == "allow":
                tools = self.session_tools(ctx.virtual_key_id, ctx.session_id)
            self.recorder.record(entry_of(ctx, tools))
        except Exception:
            log.exception("could not record request %s", ctx.request_id)
