"""The `pricing` section: overrides on top of the bundled price data, and what to do with a
model that has no price."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, model_validator

from sluice.settings.base import _Strict

_Rate = Field(default=None, ge=0, allow_inf_nan=False)


class ModelPrice(_Strict):
    """Dollars per million tokens (and per call for server-side web searches). Cache rates left
    out are taken as the input rate; a 1-hour cache write left out as the cache-write rate."""

    input_cost_per_mtok: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    output_cost_per_mtok: Decimal = Field(default=Decimal(0), ge=0, allow_inf_nan=False)
    cache_read_input_cost_per_mtok: Decimal | None = _Rate
    cache_write_input_cost_per_mtok: Decimal | None = _Rate
    cache_write_1h_input_cost_per_mtok: Decimal | None = _Rate
    web_search_cost_per_call: Decimal | None = _Rate


class PricingConfig(_Strict):
    """`overrides` price models by name (the same lookup rules as the bundled data: date
    suffixes, provider prefixes, Bedrock and Vertex ids). `unpriced` says what happens to a
    request for a model with no price at all when a dollar budget applies to it: `refuse` (403,
    the default), `allow` (it costs $0: budgets do not hold it back), or a default price."""

    overrides: dict[str, ModelPrice] = Field(default_factory=dict)
    unpriced: Literal["refuse", "allow"] | ModelPrice = "refuse"

    @model_validator(mode="before")
    @classmethod
    def _flat_overrides(cls, data: Any) -> Any:
        # The earlier shape, `pricing: {model: price}`, still reads as `pricing.overrides`.
        if isinstance(data, dict) and data and not ({"overrides", "unpriced"} & data.keys()):
            return {"overrides": data}
        return data
