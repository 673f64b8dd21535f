from __future__ import annotations

from decimal import Decimal

from sluice.core.types import Usage
from sluice.pricing.table import PriceTable, pico_to_dollars
from sluice.settings import parse_config


def test_exact_cost_with_cache_tokens() -> None:
    table = PriceTable.bundled()
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=2000, cache_write_tokens=300)
    # claude-sonnet-4-6: 3 in, 15 out, 0.30 cache read, 3.75 cache write per million tokens
    expected = Decimal("0.003") + Decimal("0.0075") + Decimal("0.0006") + Decimal("0.001125")
    assert pico_to_dollars(table.cost_pico("claude-sonnet-4-6", usage)) == expected


def test_dated_and_prefixed_names_resolve() -> None:
    table = PriceTable.bundled()
    usage = Usage(input_tokens=1_000_000)
    assert pico_to_dollars(table.cost_pico("claude-haiku-4-5-20251001", usage)) == Decimal(1)
    assert pico_to_dollars(table.cost_pico("anthropic/claude-haiku-4-5", usage)) == Decimal(1)
    assert table.cost_pico("no-such-model", usage) == 0


def test_tiny_prices_stay_exact() -> None:
    # One cached token of gpt-4o-mini costs 0.075 micro-dollars: no float rounding anywhere.
    table = PriceTable.bundled()
    assert table.cost_pico("gpt-4o-mini", Usage(cache_read_tokens=1)) == 75_000
    assert pico_to_dollars(table.cost_pico("gpt-4o-mini", Usage(cache_read_tokens=3))) == Decimal("0.000000225")


def test_config_overrides_price() -> None:
    cfg = parse_config({"pricing": {"my-vllm-model": {"input_cost_per_mtok": 0.5, "output_cost_per_mtok": 1.5}}})
    table = PriceTable.bundled(cfg.pricing)
    cost = table.cost_pico("my-vllm-model", Usage(input_tokens=2_000_000, output_tokens=1_000_000))
    assert pico_to_dollars(cost) == Decimal("2.5")
    assert table.version.endswith("+overrides")
