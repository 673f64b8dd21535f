"""One attempt: choose the provider and key, reserve, build the provider's body, call, and read
the reply (a whole answer, a stream started, or an error as a `ProviderError`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sluice.core.context import Attempt
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.model_names import check_url_model
from sluice.core.types import Operation, WireFormat
from sluice.engine.charge import Charge
from sluice.engine.context import RequestContext
from sluice.engine.plan import plan
from sluice.engine.shapes import Inbound, Outcome
from sluice.engine.stream import Stream
from sluice.formats.json_body import encode_body
from sluice.formats.registry import record_of
from sluice.metering import stream_observer, usage_of
from sluice.providers.base import Provider, ProviderCall, ProviderReply
from sluice.storage.records import VirtualKey
from sluice.translation import bridge_for, count_body, local_count
from sluice.translation.bridge import Translation

if TYPE_CHECKING:
    from sluice.engine.run import Engine

# The kinds that say the provider (or the way to it) is unwell: they count toward its key's
# circuit breaker. A rate limit says nothing about health; any other answer means it is up.
_UNWELL = frozenset(
    {
        ErrorKind.PROVIDER_ERROR,
        ErrorKind.PROVIDER_OVERLOADED,
        ErrorKind.PROVIDER_TIMEOUT,
        ErrorKind.PROVIDER_UNREACHABLE,
        ErrorKind.PROVIDER_STREAM_BROKEN,
        ErrorKind.PROVIDER_REFUSED,
    }
)


async def attempt(
    engine: Engine, ctx: RequestContext, inbound: Inbound, key: VirtualKey, model: str, tried_keys: set[str]
) -> Outcome:
    provider, chosen, pkey = plan(engine.providers, engine.breakers, key, inbound, model, tried_keys)
    breaker = f"{provider.name}/{pkey.name if pkey else '-'}"
    # Only the key really used takes a half-open breaker's probe slot; an attempt that ends
    # without a verdict on the key (refused by a budget, cancelled, a 429) gives it back.
    probe = engine.breakers.claim(breaker, time.monotonic()) if pkey is not None else 0
    model = chosen.model
    try:
        ctx.provider, ctx.model = provider.name, model
        if provider.model_in_url:  # the name after aliases and routing, as this provider gets it
            check_url_model(model, provider.name)
        ctx.provider_key_name = pkey.name if pkey else None
        target, bridge, inbound.canonical = bridge_for(provider, model, inbound, inbound.canonical)
        if target is None:  # nothing to ask the provider: answer a documented local estimate, free
            assert inbound.canonical is not None
            ctx.attempts.append(Attempt(model, provider.name, outcome="estimated"))
            ctx.status = 200
            body = count_body(inbound.wire, local_count(inbound.canonical))
            return Outcome(200, "application/json", {"x-sluice-token-count": "estimate"}, body=body)
        charge = ctx.charge
        if charge is None:
            charge = ctx.charge = Charge(engine.limits, key, ctx.request_id, ctx.started_unix, ctx.session_id)
        cost, input_tokens, output_tokens = engine.costs.worst_case(charge, ctx, inbound, provider, model)
        await charge.reserve(len(ctx.attempts), cost, input_tokens, output_tokens)
        record = Attempt(model, provider.name, ctx.provider_key_name)
        if bridge is not None:
            record.translated = f"{inbound.wire.value}->{target.value}"  # the request log says so
        ctx.attempts.append(record)
        if pkey is not None:
            tried_keys.add(pkey.name)

        hide_usage = False
        if ctx.guardrail is not None:
            ctx.guardrail.to_provider(inbound.doc, provider.name)  # rules for some providers only
        if bridge is not None:
            body, doc = bridge.body(model, ctx.stream)
            record.dropped_tools = bridge.dropped  # optional vendor tools the target cannot run: said, never silent
        else:
            body, doc, hide_usage = _passed_body(inbound, model, ctx.stream)
        call = ProviderCall(
            target, inbound.operation, model, body, doc, inbound.headers, inbound.query, ctx.stream, pkey
        )
        now = time.monotonic()
        try:
            reply = await engine.observer.send(ctx, provider, call, record)
        except SluiceError as err:
            if err.kind in _UNWELL:
                engine.breakers.failed(breaker, now)
            raise
        record.status = ctx.status = reply.status
        if reply.status >= 400:
            failure = provider.parse_error(reply, call)
            if failure.kind in _UNWELL:
                engine.breakers.failed(breaker, now)
            elif failure.kind is not ErrorKind.PROVIDER_RATE_LIMITED:
                engine.breakers.succeeded(breaker)
            if failure.reply is not None and bridge is not None:
                failure.failure = bridge.failure(reply.status, reply.body or b"")
            raise failure
        engine.breakers.succeeded(breaker)
        outcome = await _answer(engine, ctx, target, inbound.operation, provider, model, reply, bridge, hide_usage)
        if bridge is not None and bridge.dropped:
            outcome.headers["x-sluice-dropped-tools"] = ",".join(bridge.dropped)
        record.outcome = "ok"
        if charge.limited:
            outcome.headers.update(charge.budget_headers)
        if outcome.chunks is None:
            if ctx.capture:
                ctx.captured_response = outcome.body
            await engine.settle(ctx)  # durable before the caller sees the answer
        return outcome

    finally:
        if probe:
            engine.breakers.give_back(breaker, probe)


def _passed_body(inbound: Inbound, model: str, stream: bool) -> tuple[bytes, dict[str, object], bool]:
    """(body, parsed body, whether the usage chunk asked for on the caller's behalf is hidden)
    of a request in the provider's own format: the caller's bytes, unless the model changed or a
    Chat stream needs its usage asked for. The parsed body is copied only when it changes."""
    doc = inbound.doc
    changed = inbound.model is None and model != doc.get("model")
    hide_usage = False
    if changed:
        doc = {**doc, "model": model}
    if stream or "stream_options" in doc:
        # The format's own stream rules (Chat asks for usage on the caller's behalf and hides the
        # extra chunk again; Responses drops Chat's include_usage, which its API refuses).
        candidate = doc if changed else dict(doc)
        prepared = record_of(inbound.wire).prepare_stream(candidate, stream)
        if prepared.changed:
            doc, changed, hide_usage = candidate, True, prepared.hide_usage
    return (encode_body(doc) if changed else inbound.body), doc, hide_usage


async def _answer(
    engine: Engine,
    ctx: RequestContext,
    wire: WireFormat,
    operation: Operation,
    provider: Provider,
    model: str,
    reply: ProviderReply,
    bridge: Translation | None,
    hide_usage: bool,
) -> Outcome:
    """The provider's answer, metered in its own format `wire`, carried into the caller's."""
    if reply.chunks is None:
        assert reply.body is not None
        if operation is not Operation.COUNT_TOKENS:
            ctx.answered(usage_of(wire, reply.body))
            if ctx.charge is not None:
                ctx.charge.usage_missing = operation is Operation.GENERATE and not ctx.usage.reported
        guard = ctx.guardrail if operation is Operation.GENERATE else None  # not embeddings, counts
        body = reply.body if guard is None else guard.answer(reply.body)  # scanned, restored
        outcome = Outcome(reply.status, reply.content_type, reply.headers, body=body)
        if bridge is not None:
            outcome.body, outcome.content_type = bridge.response(body, ctx.request_id, model), "application/json"
        return outcome
    observer = stream_observer(wire, hide_usage)
    charge = ctx.charge
    observer.count_output = charge is not None and charge.guards_output
    if ctx.capture:
        observer.count_output = True
        observer.captured = ctx.captured_stream = []
    translator = bridge.stream_translator(ctx.request_id, model) if bridge is not None else None
    content_type = translator.content_type if translator is not None else reply.content_type
    stream = Stream(ctx, reply.chunks, observer, translator, charge, engine.costs, engine.settle, provider, model)
    if ctx.guardrail is not None:
        stream.guardrail = ctx.guardrail.stream(observer, record_of(wire).reader.sse)
    # Wait for the stream's first piece here: until then nothing reached the caller, so a failure
    # can still be retried or fall back.
    await stream.start()
    return Outcome(reply.status, content_type, reply.headers, chunks=stream)
