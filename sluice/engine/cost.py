"""What a request may cost before it runs (its reservation), what a stream's next block costs,
and what the answer cost."""

from __future__ import annotations

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation
from sluice.engine.charge import Charge
from sluice.engine.context import RequestContext
from sluice.engine.shapes import Inbound
from sluice.governance.limits import Limits
from sluice.pricing.demand import demand_of
from sluice.pricing.table import Price, PriceTable
from sluice.providers.base import Provider
from sluice.storage.records import VirtualKey


def first_output_block(output_tokens: int, stream: bool, block: int) -> int:
    """The output a request reserves up front. A stream reserves at most one block and extends
    block by block while it runs (`sluice.engine.stream`), so a large `max_tokens` (coding
    agents send 32,000 and more) does not hold a budget it will mostly not use; an answer that
    is not streamed cannot be cut, so it reserves all of it."""
    return min(output_tokens, block) if stream else output_tokens


def vendor_of(provider: Provider) -> str:
    # An OpenAI-compatible vendor is known to the price data by its name (groq, mistral, ...).
    return provider.name if provider.type == "openai_compatible" else provider.type


class Costs:
    def __init__(self, prices: PriceTable, limits: Limits, default_max_tokens: int, stream_blocks: bool) -> None:
        self.prices = prices
        self.limits = limits
        self.block = default_max_tokens  # the output a request without a limit reserves; a stream's block
        self.stream_blocks = stream_blocks  # governance.stream_reservation == "block"

    def worst_case(
        self, charge: Charge, ctx: RequestContext, inbound: Inbound, provider: Provider, model: str
    ) -> tuple[int, int, int]:
        """(pico-dollars, input tokens, output tokens): what the request can consume. Input is estimated
        generously at one token per three bytes of body; output is the request's largest output limit in any
        spelling (at least its thinking budget), or `default_max_tokens` when it names none (a longer stream
        then has to extend its reservation), for each choice it asks for; plus the server-side searches it
        may run, at the service tier it asks for; input stored at the provider that the body only refers to
        counts as the model's whole context window (see pricing.demand)."""
        input_tokens = len(inbound.body) // 3 + 1
        output_tokens, searches, tier, speed = 0, 0, "", ""
        assert ctx.key is not None
        price = self.price(ctx.key, provider, model)
        if inbound.operation is Operation.GENERATE:
            demand = demand_of(inbound.doc)
            input_tokens = demand.input_tokens(input_tokens, price.context_window if price else None)
            output_tokens = demand.output_tokens(self.block)
            output_tokens = first_output_block(output_tokens, ctx.stream and self.stream_blocks, self.block)
            searches, tier, speed = demand.searches, demand.service_tier, demand.speed
            if demand.background and self.dollar_budget(ctx.key):
                raise SluiceError(
                    ErrorKind.CALLER_BAD_REQUEST,
                    "Background responses ('background': true) answer before the work is done, without "
                    "usage, so they cannot be charged to a budget. Send the request without 'background' "
                    "(stream it instead, if it is long).",
                )
        cost = (
            price.worst_case_pico(input_tokens, output_tokens, searches=searches, service_tier=tier, speed=speed)
            if price
            else 0
        )
        charge.tier = (tier, speed)
        return cost, input_tokens, output_tokens

    def next_block(self, charge: Charge, provider: Provider, model: str) -> int:
        """What the next block of a stream's output costs."""
        price = self.prices.price_for(model, vendor_of(provider))
        tier, speed = charge.tier
        return price.output_pico(charge.input_estimate, self.block, service_tier=tier, speed=speed) if price else 0

    def dollar_budget(self, key: VirtualKey) -> bool:
        """A dollar limit applies to the key: a budget, or a session cap's dollars (which an
        unpriced model or a background response would otherwise pass at $0)."""
        if any(rule.measure == "cost" for rule in self.limits.rules_for(key)):
            return True
        return any(cap.max_cost_pico is not None for cap in self.limits.session_caps_for(key))

    def price(self, key: VirtualKey, provider: Provider, model: str) -> Price | None:
        """The model's price; refuses (403) a model nothing prices when a dollar budget applies,
        unless `pricing.unpriced` allows it or gives a default price."""
        price = self.prices.price_for(model, vendor_of(provider))
        if price is None and self.prices.unpriced_policy == "refuse" and self.dollar_budget(key):
            raise SluiceError(
                ErrorKind.POLICY_UNPRICED,
                f"Model '{model}' has no price in this gateway, and a dollar budget applies to this key, "
                "so the request is refused rather than charged $0. Ask your platform team to price it under "
                "'pricing.overrides' in the gateway config (or to set 'pricing.unpriced').",
                details={"model": model},
            )
        return price

    def answer_cost(self, ctx: RequestContext, vendor: str | None) -> int:
        """The answer's cost, for the model the provider says served it. A successful answer that
        reported no usage at all is charged what its reservation held, never $0."""
        assert ctx.model is not None
        charge = ctx.charge
        if charge is not None and charge.usage_missing:
            return charge.reserved_pico
        served = ctx.usage.served_model
        if served and served != ctx.model and ctx.attempts:
            ctx.attempts[-1].served_model = served[:200]  # the request log says what was priced
        tier, speed = charge.tier if charge is not None else ("", "")
        if tier and not ctx.usage.service_tier:  # the answer did not say: bill the tier asked for
            ctx.usage.service_tier = tier
        return self.prices.cost_pico(ctx.model, ctx.usage, vendor, speed=speed)
