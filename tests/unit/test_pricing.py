from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage as GpUsage
from genai_prices import calc_price

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


# --- the bundled data keeps up: genai-prices' snapshot, Sluice's supplement, every name -------

# The models the pinned agent CLIs ask for when the user names none, in every spelling their
# providers use. Found in the CLIs themselves: Claude Code 2.1.332's model catalogue (main model
# opus55, the Sonnet default sonnet55, the small/fast Haiku default haiku45, with their Bedrock and
# Vertex ids), Codex 0.171.0 (`gpt-6.2-sol`, tests/fixtures/codex/FINDINGS.md), Gemini CLI 0.61.0's
# `auto` (a `gemini-3.5-flash-lite` classifier call, then `gemini-3.8-flash`, or
# `gemini-3.1-pro-preview` for hard turns and as its fallback; tests/fixtures/gemini_cli/FINDINGS.md).
AGENT_DEFAULTS = [
    ("claude-opus-5-5", "anthropic"),
    ("claude-sonnet-5-5", "anthropic"),
    ("claude-haiku-4-5-20251001", "anthropic"),
    ("us.anthropic.claude-opus-5-5", "bedrock"),
    ("us.anthropic.claude-sonnet-5-5", "bedrock"),
    ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock"),
    ("claude-opus-5-5", "vertex"),
    ("claude-haiku-4-5@20251001", "vertex"),
    ("gpt-6.2-sol", "openai"),
    ("gemini-3.5-flash-lite", "gemini"),
    ("gemini-3.8-flash", "gemini"),
    ("gemini-3.1-pro-preview", "gemini"),
]


@pytest.mark.parametrize(("model", "vendor"), AGENT_DEFAULTS)
def test_every_default_model_of_the_pinned_agents_has_a_price(model: str, vendor: str) -> None:
    table = PriceTable.bundled()
    for hint in (vendor, None):  # with the provider's own ids first, and by name alone
        price = table.lookup(model, hint)
        assert price is not None, f"{model} ({hint}) has no price: it would cost $0"
        assert price.input.base > 0 and price.output.base > 0


def test_claude_code_default_model_is_priced_from_genai_prices() -> None:
    # Fails on main without the fix: the 25-model table had no claude-opus-5-5, so it cost $0.
    table = PriceTable.bundled()
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    expected = calc_price(GpUsage(input_tokens=1_000_000, output_tokens=1_000_000), "claude-opus-5-5").total_price
    assert pico_to_dollars(table.cost_pico("claude-opus-5-5", usage)) == expected == Decimal(24)
    assert table.version.startswith("genai-prices 0.2.")


@pytest.mark.parametrize(
    ("model", "usage"),
    [
        ("claude-sonnet-4-5", Usage(input_tokens=150_000, output_tokens=2_000, cache_read_tokens=30_000)),
        ("claude-sonnet-4-5", Usage(input_tokens=180_000, output_tokens=2_000, cache_read_tokens=30_000)),
        ("gemini-2.5-pro", Usage(input_tokens=250_000, output_tokens=10_000)),
        ("gpt-5", Usage(input_tokens=12_345, output_tokens=678, cache_read_tokens=9_000)),
        ("claude-opus-4-1", Usage(input_tokens=10, output_tokens=20, cache_write_tokens=3_000)),
    ],
)
def test_costs_match_genai_prices_own_calculator(model: str, usage: Usage) -> None:
    """Sluice converts the snapshot once and does its own integer arithmetic: it must agree with
    the library's calculator to the pico-dollar, long-context tiers included."""
    table = PriceTable.bundled()
    theirs = calc_price(
        GpUsage(
            input_tokens=usage.prompt_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
        ),
        model,
    ).total_price
    assert pico_to_dollars(table.cost_pico(model, usage)) == theirs


def test_long_context_tier_prices_the_whole_request() -> None:
    # Claude Sonnet 4.5 above 200k prompt tokens: $6 in / $22.50 out for every token.
    table = PriceTable.bundled()
    short = table.cost_pico("claude-sonnet-4-5", Usage(input_tokens=200_000, output_tokens=1_000))
    long = table.cost_pico("claude-sonnet-4-5", Usage(input_tokens=200_001, output_tokens=1_000))
    assert pico_to_dollars(short) == Decimal("0.6") + Decimal("0.015")
    assert pico_to_dollars(long) == Decimal("200001") * 6 / 10**6 + Decimal("0.0225")
    # Cached tokens count toward the threshold too.
    cached = table.cost_pico("claude-sonnet-4-5", Usage(input_tokens=100, cache_read_tokens=200_000))
    assert pico_to_dollars(cached) == Decimal(100) * 6 / 10**6 + Decimal(200_000) * Decimal("0.6") / 10**6


def test_one_hour_cache_writes_and_web_searches_are_charged() -> None:
    table = PriceTable.bundled()
    # claude-opus-5-5: cache write $5/MTok (5 minutes), $8/MTok (1 hour); web search $10 per 1,000.
    usage = Usage(cache_write_tokens=1_000_000, cache_write_1h_tokens=400_000, web_searches=3)
    assert pico_to_dollars(table.cost_pico("claude-opus-5-5", usage)) == Decimal(3) + Decimal("3.2") + Decimal("0.03")


def test_priority_tier_is_billed_at_its_rate() -> None:
    table = PriceTable.bundled()
    # gpt-6.1-sol: $2 in / $10 out; priority twice that, flex half (below the 272k tier).
    standard = table.cost_pico("gpt-6.1-sol", Usage(100_000, 100_000))
    priority = table.cost_pico("gpt-6.1-sol", Usage(100_000, 100_000, service_tier="priority"))
    flex = table.cost_pico("gpt-6.1-sol", Usage(100_000, 100_000, service_tier="flex"))
    assert [pico_to_dollars(c) for c in (standard, priority, flex)] == [Decimal("1.2"), Decimal("2.4"), Decimal("0.6")]
    assert pico_to_dollars(table.cost_pico("gpt-6.2-sol", Usage(100_000, 0, service_tier="priority"))) == Decimal("0.4")


def test_the_served_model_is_priced_when_it_differs() -> None:
    table = PriceTable.bundled()
    usage = Usage(input_tokens=1_000_000, served_model="claude-opus-4-1-20250805")
    assert pico_to_dollars(table.cost_pico("claude-haiku-4-5", usage)) == 15
    # An answer naming something unpriced is charged at the requested model's price, not $0.
    odd = Usage(input_tokens=1_000_000, served_model="/models/local-llama")
    assert pico_to_dollars(table.cost_pico("claude-haiku-4-5", odd)) == 1


@pytest.mark.parametrize(
    ("name", "vendor", "source"),
    [
        ("anthropic.claude-sonnet-4-5-20250929-v1:0", None, "anthropic:claude-sonnet-4-5"),
        ("eu.anthropic.claude-sonnet-4-5-20250929-v1:0", None, "anthropic:claude-sonnet-4-5"),
        ("us.anthropic.claude-opus-5-5", "bedrock", "aws:regional.anthropic.claude-opus-5-5"),
        ("claude-sonnet-4-5@20250929", "vertex", "google:claude-sonnet-4-5"),
        ("models/gemini-2.5-pro", None, "google:gemini-2.5-pro"),
        ("openrouter/openai/gpt-5", None, "openai:gpt-5"),
        ("gpt-6.2-sol-2026-11-20", None, "sluice"),
    ],
)
def test_lookup_rules(name: str, vendor: str | None, source: str) -> None:
    price = PriceTable.bundled().lookup(name, vendor)
    assert price is not None and price.source == source


def test_azure_deployment_names_price_as_their_model() -> None:
    table = PriceTable.bundled(aliases={"prod-chat": "gpt-4o"})
    assert table.lookup("prod-chat", "azure") == table.lookup("gpt-4o")
    assert PriceTable.bundled().lookup("prod-chat", "azure") is None


def test_hostile_names_are_bounded() -> None:
    table = PriceTable.bundled()
    assert table.lookup("claude-opus-5-5" + "x" * 300) is None  # too long to be a model name
    for i in range(5000):  # each distinct name is remembered, within a bound
        table.lookup(f"no-such-model-{i}")
    assert table._find.cache_info().currsize <= 4096


def test_overrides_beat_the_bundled_data_and_unpriced_defaults() -> None:
    cfg = parse_config(
        {
            "pricing": {
                "overrides": {"claude-opus-5-5": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 2}},
                "unpriced": {"input_cost_per_mtok": 7, "output_cost_per_mtok": 9},
            }
        }
    )
    table = PriceTable.bundled(cfg.pricing)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert pico_to_dollars(table.cost_pico("claude-opus-5-5-20261101", usage)) == 3
    assert table.lookup("my-own-model") is None
    assert pico_to_dollars(table.cost_pico("my-own-model", usage)) == 16  # the default price
    assert table.unpriced_policy == "default"


def test_worst_case_takes_the_long_context_tier_the_service_tier_and_searches() -> None:
    price = PriceTable.bundled().lookup("gpt-6.1-sol")
    assert price is not None
    standard = price.worst_case_pico(10, 9_000)
    assert price.worst_case_pico(10, 9_000, service_tier="priority") == 2 * standard
    # Above 272k prompt tokens every token pays the long-context rate: $5 per million is the
    # dearest input (a cache write), $15 per million output.
    assert price.worst_case_pico(300_000, 1_000) == (300_000 * 5 + 1_000 * 15) * 10**6
    assert price.worst_case_pico(0, 0, searches=10) == 10 * 10**10  # $0.01 a search


def test_anthropic_fast_mode_is_billed_at_its_rate() -> None:
    table = PriceTable.bundled()
    usage = Usage(input_tokens=1_000_000)
    # claude-opus-5-5: $4 per million input tokens, $8 in fast mode (`speed: fast`).
    assert pico_to_dollars(table.cost_pico("claude-opus-5-5", usage)) == 4
    assert pico_to_dollars(table.cost_pico("claude-opus-5-5", usage, speed="fast")) == 8


def test_an_openai_compatible_vendor_prices_its_own_models() -> None:
    table = PriceTable.bundled()
    assert table.lookup("llama-3.3-70b-versatile") is None  # no provider claims the bare name
    price = table.lookup("llama-3.3-70b-versatile", "groq")
    assert price is not None and price.source.startswith("groq:")


def test_long_names_are_not_cached() -> None:
    table = PriceTable.bundled()
    table.lookup("m" * 100_000)
    assert table._find.cache_info().currsize == 0


def test_a_stream_block_is_priced_at_the_prompts_tier_and_the_requested_service_tier() -> None:
    price = PriceTable.bundled().lookup("gpt-6.1-sol")
    assert price is not None
    assert price.output_pico(1_000, 1_000) == 1_000 * 10 * 10**6  # $10 per million output tokens
    assert price.output_pico(300_000, 1_000) == 1_000 * 15 * 10**6  # above 272k: $15
    assert price.output_pico(1_000, 1_000, service_tier="priority") == 1_000 * 20 * 10**6


def test_lookup_prices_on_the_utc_day_of_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The day a price is looked up for follows time.time() across midnight, both ways."""
    import sluice.pricing.table as table_module

    table = PriceTable.bundled()
    days: list[object] = []
    monkeypatch.setattr(table, "_find", lambda model, vendor, day: days.append(day))
    midnight = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    for now in (midnight - 0.5, midnight, midnight + 86_399.9, midnight - 1.0):
        monkeypatch.setattr(table_module.time, "time", lambda now=now: now)
        table.lookup("claude-sonnet-4-5")
    assert [str(d) for d in days] == ["2025-12-31", "2026-01-01", "2026-01-01", "2025-12-31"]
