"""Exact cost of a request from a bundled, versioned price table plus config overrides.

Prices are dollars per million tokens, so `price * tokens` is micro-dollars; costs are kept as
integer pico-dollars (1e-12 USD) so that every price with up to six decimals is exact.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources

from sluice.core.types import Usage
from sluice.settings import ModelPrice

PICO_PER_MICRO = 1_000_000
_DATE_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


@dataclass(frozen=True, slots=True)
class Price:
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    provider: str = ""

    def cost_pico(self, usage: Usage) -> int:
        micro = (
            self.input * usage.input_tokens
            + self.output * usage.output_tokens
            + self.cache_read * usage.cache_read_tokens
            + self.cache_write * usage.cache_write_tokens
        )
        return int(micro * PICO_PER_MICRO)

    def worst_case_pico(self, input_tokens: int, output_tokens: int) -> int:
        """The most a request can cost: every input token at the dearest input rate."""
        dearest_input = max(self.input, self.cache_write, self.cache_read)
        return int((dearest_input * input_tokens + self.output * output_tokens) * PICO_PER_MICRO)


def pico_to_dollars(pico: int) -> Decimal:
    return Decimal(pico) / Decimal(10**12)


class PriceTable:
    def __init__(self, prices: dict[str, Price], version: str) -> None:
        self._prices = prices
        self.version = version

    @classmethod
    def bundled(cls, overrides: dict[str, ModelPrice] | None = None) -> PriceTable:
        raw = json.loads(resources.files("sluice.pricing").joinpath("prices.json").read_text("utf-8"))
        prices = {
            name: Price(
                input=Decimal(p["input"]),
                output=Decimal(p["output"]),
                cache_read=Decimal(p.get("cache_read", p["input"])),
                cache_write=Decimal(p.get("cache_write", p["input"])),
                provider=p.get("provider", ""),
            )
            for name, p in raw["models"].items()
        }
        for name, o in (overrides or {}).items():
            prices[name] = Price(
                input=o.input_cost_per_mtok,
                output=o.output_cost_per_mtok,
                cache_read=o.cache_read_input_cost_per_mtok
                if o.cache_read_input_cost_per_mtok is not None
                else o.input_cost_per_mtok,
                cache_write=o.cache_write_input_cost_per_mtok
                if o.cache_write_input_cost_per_mtok is not None
                else o.input_cost_per_mtok,
            )
        version = raw["version"] + ("+overrides" if overrides else "")
        return cls(prices, version)

    def lookup(self, model: str) -> Price | None:
        """Exact name first, then without a `provider/` prefix, then without a date suffix."""
        candidates = [model]
        if "/" in model:
            candidates.append(model.split("/", 1)[1])
        for name in list(candidates):
            stripped = _DATE_SUFFIX.sub("", name)
            if stripped != name:
                candidates.append(stripped)
        for name in candidates:
            price = self._prices.get(name)
            if price is not None:
                return price
        return None

    def cost_pico(self, model: str, usage: Usage) -> int:
        price = self.lookup(model)
        return price.cost_pico(usage) if price else 0

    def provider_of(self, model: str) -> str | None:
        price = self.lookup(model)
        return price.provider or None if price else None
