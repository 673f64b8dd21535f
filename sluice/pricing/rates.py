"""A model's prices as Sluice keeps them: exact Decimal rates, long-context tiers, per-call charges
and service-tier variants, and the integer pico-dollar cost of a usage.

Rates are dollars per million tokens, so `rate * tokens` is micro-dollars; costs are integer
pico-dollars (1e-12 USD), so every price with up to six decimals is exact. Per-call charges are
dollars per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

from sluice.core.types import Usage

PICO_PER_MICRO = 1_000_000
PICO_PER_DOLLAR = 10**12


@dataclass(frozen=True, slots=True)
class Rate:
    """Dollars per million tokens. `tiers` are (threshold, rate) pairs: when a request's prompt
    (every input token, cached or not) is larger than a threshold, the whole request pays that
    tier's rate, as Anthropic, OpenAI and Google bill long contexts."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()

    def at(self, prompt_tokens: int) -> Decimal:
        for start, rate in reversed(self.tiers):
            if prompt_tokens > start:
                return rate
        return self.base

    @property
    def dearest(self) -> Decimal:
        return max([self.base, *(rate for _, rate in self.tiers)])


ZERO = Rate(Decimal(0))


@dataclass(frozen=True, slots=True)
class Price:
    input: Rate
    output: Rate
    cache_read: Rate
    cache_write: Rate  # a 5-minute cache write (Anthropic's default), or the only kind
    cache_write_1h: Rate
    web_search: Decimal = Decimal(0)  # dollars per server-side search
    # Service-tier prices (`priority`, `flex`, `fast`, ...) keyed as "service_tier=priority" or
    # "speed=fast": what the provider bills when the request runs on that tier.
    variants: dict[str, Price] = field(default_factory=dict, compare=False)
    source: str = ""  # where the price comes from: the snapshot's model id, "config", "sluice"

    @classmethod
    def flat(
        cls,
        input: Decimal,
        output: Decimal,
        cache_read: Decimal | None = None,
        cache_write: Decimal | None = None,
        cache_write_1h: Decimal | None = None,
        web_search: Decimal = Decimal(0),
        source: str = "",
    ) -> Price:
        """Untiered prices; cache rates default to the input rate (the safe side for budgets)."""
        read = Rate(input if cache_read is None else cache_read)
        write = Rate(input if cache_write is None else cache_write)
        write_1h = write if cache_write_1h is None else Rate(cache_write_1h)
        return cls(Rate(input), Rate(output), read, write, write_1h, web_search, {}, source)

    def for_tier(self, service_tier: str, speed: str = "") -> Price:
        """The price of the tier the request ran on (or asked for); the standard price otherwise."""
        for key in (f"speed={speed}" if speed else "", f"service_tier={service_tier}" if service_tier else ""):
            if key and key in self.variants:
                return self.variants[key]
        return self

    def cost_pico(self, usage: Usage, *, speed: str = "") -> int:
        """What the usage costs, with the long-context tier its prompt size selects, on the
        service tier the answer reports (and the `speed` the request asked for)."""
        price = self.for_tier(usage.service_tier, speed)
        prompt = usage.prompt_tokens
        one_hour = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
        micro = (
            price.input.at(prompt) * usage.input_tokens
            + price.output.at(prompt) * usage.output_tokens
            + price.cache_read.at(prompt) * usage.cache_read_tokens
            + price.cache_write.at(prompt) * (usage.cache_write_tokens - one_hour)
            + price.cache_write_1h.at(prompt) * one_hour
        )
        return int(micro * PICO_PER_MICRO + price.web_search * usage.web_searches * PICO_PER_DOLLAR)

    def worst_case_pico(
        self, input_tokens: int, output_tokens: int, *, searches: int = 0, service_tier: str = "", speed: str = ""
    ) -> int:
        """The most a request can cost: every input token at the dearest input rate (a cache
        write with the 1-hour lifetime costs more than a plain input token), at the tier its
        prompt size selects, on the service tier it asks for, with `searches` server-side calls."""
        price = self.for_tier(service_tier, speed)
        dearest_input = max(
            price.input.at(input_tokens),
            price.cache_write.at(input_tokens),
            price.cache_write_1h.at(input_tokens),
            price.cache_read.at(input_tokens),
        )
        micro = dearest_input * input_tokens + price.output.at(input_tokens) * output_tokens
        return int(micro * PICO_PER_MICRO + price.web_search * searches * PICO_PER_DOLLAR)

    def output_pico(self, prompt_tokens: int, output_tokens: int, *, service_tier: str = "", speed: str = "") -> int:
        """What `output_tokens` more of output cost, at the tier the prompt selects: the price of
        one more block of a stream that outgrew its reservation."""
        price = self.for_tier(service_tier, speed)
        return int(price.output.at(prompt_tokens) * output_tokens * PICO_PER_MICRO)

    def with_source(self, source: str) -> Price:
        return replace(self, source=source)


def pico_to_dollars(pico: int) -> Decimal:
    return Decimal(pico) / Decimal(PICO_PER_DOLLAR)
