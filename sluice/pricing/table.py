"""Exact cost of a request: config overrides, then the bundled genai-prices snapshot, then
Sluice's own small supplement (models the snapshot does not price yet), looked up by every
spelling of a model name (see `names`).

`PriceTable.version` names the data a cost was computed with (the genai-prices release, the
supplement's date, and whether config overrides apply), so a ledger row can be traced to it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

from sluice.core.types import Usage
from sluice.pricing import names
from sluice.pricing.rates import PICO_PER_DOLLAR, Price, Rate, pico_to_dollars
from sluice.pricing.snapshot import Snapshot
from sluice.settings import ModelPrice, PricingConfig

__all__ = ["PICO_PER_DOLLAR", "Price", "PriceTable", "Rate", "pico_to_dollars", "price_of"]

# Distinct model names remembered; names are caller input, so the memory stays bounded.
_CACHE_SIZE = 4096


def price_of(o: ModelPrice, source: str = "config") -> Price:
    return Price.flat(
        o.input_cost_per_mtok,
        o.output_cost_per_mtok,
        o.cache_read_input_cost_per_mtok,
        o.cache_write_input_cost_per_mtok,
        o.cache_write_1h_input_cost_per_mtok,
        o.web_search_cost_per_call or Decimal(0),
        source,
    )


def _supplement_price(p: dict[str, Any]) -> Price:
    def rate(field: str, fallback: str) -> Rate:
        base = Decimal(p.get(field, p[fallback]))
        tiers = tuple(
            (int(start), Decimal(tier.get(field, tier.get(fallback, base))))
            for start, tier in p.get("tiers", {}).items()
        )
        return Rate(base, tiers)

    inp, out = rate("input", "input"), rate("output", "output")
    write = rate("cache_write", "input")
    price = Price(inp, out, rate("cache_read", "input"), write, write, Decimal(p.get("web_search", "0")), {}, "sluice")
    for key, factor in p.get("variants", {}).items():
        f = Decimal(factor)
        scaled = [Rate(r.base * f, tuple((s, v * f) for s, v in r.tiers)) for r in (inp, out, price.cache_read, write)]
        s_in, s_out, s_read, s_write = scaled
        price.variants[key] = Price(s_in, s_out, s_read, s_write, s_write, price.web_search, {}, f"sluice[{key}]")
    return price


class PriceTable:
    def __init__(
        self,
        prices: dict[str, Price],
        version: str,
        *,
        snapshot: Snapshot | None = None,
        supplement: dict[str, Price] | None = None,
        aliases: dict[str, str] | None = None,
        unpriced: Price | str = "refuse",
    ) -> None:
        self._overrides = {name.lower(): price for name, price in prices.items()}
        self._snapshot = snapshot
        self._supplement = {name.lower(): price for name, price in (supplement or {}).items()}
        self._aliases = dict(aliases or {})
        self.version = version
        # A model nothing prices: "refuse" it where a dollar budget applies, "allow" it at $0, or
        # charge the configured "default" price.
        self.unpriced_policy = unpriced if isinstance(unpriced, str) else "default"
        self.default_price = unpriced if isinstance(unpriced, Price) else None
        self._find = lru_cache(maxsize=_CACHE_SIZE)(self._uncached)
        self._today: date = datetime.now(UTC).date()
        # The Unix times `_today` spans (a UTC day is 86,400 s of it; a clock set back leaves it too).
        self._day_starts = self._day_ends = 0.0

    @classmethod
    def bundled(
        cls,
        pricing: PricingConfig | dict[str, ModelPrice] | None = None,
        *,
        aliases: dict[str, str] | None = None,
    ) -> PriceTable:
        config = pricing if isinstance(pricing, PricingConfig) else PricingConfig(overrides=pricing or {})
        raw = json.loads(resources.files("sluice.pricing").joinpath("prices.json").read_text("utf-8"))
        supplement = {name: _supplement_price(p) for name, p in raw["models"].items()}
        snapshot = Snapshot.bundled()
        overrides = {name: price_of(o) for name, o in config.overrides.items()}
        unpriced: Price | str = (
            config.unpriced if isinstance(config.unpriced, str) else price_of(config.unpriced, "pricing.unpriced")
        )
        version = f"{snapshot.version}+sluice {raw['version']}" + ("+overrides" if overrides else "")
        return cls(overrides, version, snapshot=snapshot, supplement=supplement, aliases=aliases, unpriced=unpriced)

    def _uncached(self, model: str, vendor: str | None, day: date) -> Price | None:
        spellings = names.candidates(model, self._aliases)
        for name in spellings:
            price = self._overrides.get(name.lower())
            if price is not None:
                return price
        if self._snapshot is not None:
            for name in spellings:
                price = self._snapshot.find(name, vendor, day)
                if price is not None:
                    return price
        for name in spellings:
            price = self._supplement.get(name.lower())
            if price is not None:
                return price
        return None

    def lookup(self, model: str, vendor: str | None = None) -> Price | None:
        """The model's price, or None when nothing prices it. `vendor` (a provider type such as
        `bedrock`, or a vendor name) lets that provider's own ids match first."""
        if not model or len(model) > names.MAX_NAME_LENGTH:
            return None  # not a model name; and the cache must not hold arbitrarily long keys
        now = time.time()
        if not self._day_starts <= now < self._day_ends:  # twice a request: no datetime object each time
            self._today = datetime.fromtimestamp(now, UTC).date()
            self._day_starts = now // 86_400 * 86_400
            self._day_ends = self._day_starts + 86_400
        return self._find(model, vendor, self._today)

    def price_for(self, model: str, vendor: str | None = None) -> Price | None:
        """The price to charge: the model's own, else the configured default for unpriced models."""
        return self.lookup(model, vendor) or self.default_price

    def cost_pico(self, model: str, usage: Usage, vendor: str | None = None, *, speed: str = "") -> int:
        """What the usage costs. The model the answer says served it is priced when it has a
        price; the requested model otherwise."""
        price = None
        if usage.served_model and usage.served_model != model:
            price = self.lookup(usage.served_model, vendor)
        price = price or self.price_for(model, vendor)
        return price.cost_pico(usage, speed=speed) if price else 0
