"""What a request asks for that decides its worst case (sluice.pricing.demand)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat
from sluice.metering import usage_of
from sluice.pricing.demand import MAX_OUTPUT_LIMIT, SEARCHES_RESERVED, STORED_CONTEXT_TOKENS, demand_of


@pytest.mark.parametrize(
    ("doc", "output"),
    [
        ({}, 4096),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 300, "max_tokens": 1}, 300),  # the larger one wins
        ({"max_output_tokens": 500}, 500),
        ({"generationConfig": {"maxOutputTokens": 700}}, 700),
        ({"generation_config": {"max_output_tokens": 800}}, 800),
        ({"inferenceConfig": {"maxTokens": 900}}, 900),
        ({"n": 3, "max_tokens": 100}, 300),
        ({"generationConfig": {"candidateCount": 4, "maxOutputTokens": 10}}, 40),
        ({"max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 5000}}, 5000),
        ({"generationConfig": {"maxOutputTokens": 10, "thinkingConfig": {"thinkingBudget": 8192}}}, 8192),
        ({"generationConfig": {"thinkingConfig": {"thinkingBudget": -1}}}, 4096),  # dynamic
        ({"max_tokens": None}, 4096),  # null is "not set" in every API
    ],
)
def test_output_reserved(doc: dict[str, Any], output: int) -> None:
    # Fails on main without the fix for n, candidateCount, snake_case Gemini, Converse, the larger
    # of two spellings and thinking budgets.
    assert demand_of(doc).output_tokens(4096) == output


@pytest.mark.parametrize(
    "doc",
    [
        {"max_tokens": "100"},
        {"max_tokens": -1},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"max_tokens": 1.5},
        {"max_tokens": MAX_OUTPUT_LIMIT + 1},
        {"generationConfig": {"maxOutputTokens": [1]}},
        {"n": 0},
        {"n": 129},
        {"n": False},
        {"generationConfig": {"candidateCount": "2"}},
        {"thinking": {"budget_tokens": -5}},
    ],
)
def test_bad_limits_are_refused(doc: dict[str, Any]) -> None:
    with pytest.raises(SluiceError) as exc:
        demand_of(doc)
    assert exc.value.kind is ErrorKind.CALLER_BAD_REQUEST


def test_searches_tiers_and_background() -> None:
    anthropic = demand_of({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]})
    assert anthropic.searches == 3
    assert demand_of({"tools": [{"type": "web_search_20260209", "name": "w"}]}).searches == SEARCHES_RESERVED
    responses = demand_of({"tools": [{"type": "web_search"}], "max_tool_calls": 2, "service_tier": "priority"})
    assert (responses.searches, responses.service_tier) == (2, "priority")
    assert demand_of({"tools": [{"googleSearch": {}}]}).searches == SEARCHES_RESERVED
    assert demand_of({"web_search_options": {}}).searches == 1
    assert demand_of({"speed": "fast"}).speed == "fast"
    assert demand_of({"background": True}).background and not demand_of({"background": "yes"}).background
    assert demand_of({"tools": "junk", "service_tier": 5}).service_tier == ""


# Hostile bodies: whatever JSON a caller sends, reading its demand either works or is a 400, and
# a provider's answer, however odd, never breaks the usage readers (and never reads negative).
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(
    [
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "n",
        "generationConfig",
        "generation_config",
        "thinking",
        "tools",
        "service_tier",
        "speed",
        "background",
        "max_tool_calls",
        "web_search_options",
        "usage",
        "usageMetadata",
        "model",
        "candidates",
        "output",
        "inferenceConfig",
    ]
)
_docs = st.dictionaries(_keys, _json, max_size=6)
_SETTINGS = settings(max_examples=300, deadline=None, derandomize=True)


@_SETTINGS
@given(_docs)
def test_demand_of_any_body_is_a_demand_or_a_400(doc: dict[str, Any]) -> None:
    try:
        demand = demand_of(doc)
    except SluiceError as err:
        assert err.kind is ErrorKind.CALLER_BAD_REQUEST
        return
    assert 1 <= demand.output_tokens(4096) <= MAX_OUTPUT_LIMIT * 128
    assert demand.searches >= 0 and 1 <= demand.choices <= 128


@_SETTINGS
@given(_docs)
def test_usage_readers_take_any_answer(doc: dict[str, Any]) -> None:
    body = json.dumps(doc).encode()
    for wire in (WireFormat.ANTHROPIC_MESSAGES, WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES, WireFormat.GEMINI):
        usage = usage_of(wire, body)
        assert min(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.web_searches) >= 0


def test_input_stored_at_the_provider_counts_as_a_whole_context_window() -> None:
    plain = demand_of({"contents": []})
    assert plain.input_tokens(50, 1_000_000) == 50
    cached = demand_of({"contents": [], "cachedContent": "cachedContents/abc"})
    assert cached.input_tokens(50, 1_000_000) == 1_000_000
    assert cached.input_tokens(50, None) == STORED_CONTEXT_TOKENS  # a window the price data does not give
    assert demand_of({"input": "x", "previous_response_id": "resp_1"}).stored_context
    assert not demand_of({"input": "x", "previous_response_id": None, "prompt": {}}).stored_context


@pytest.mark.parametrize(
    "turn",
    [
        {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]},
        {  # a tool result's document, one level down
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t",
                    "content": [{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}],
                }
            ],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]},
        {"role": "model", "parts": [{"file_data": {"file_uri": "https://x/files/v"}}]},  # Gemini's own turns too
    ],
)
def test_a_part_that_points_at_a_file_counts_as_stored_input(turn: dict[str, Any]) -> None:
    key = "contents" if "parts" in turn else "messages"
    assert demand_of({key: [turn]}).stored_context


def test_inline_content_is_not_stored_input() -> None:
    inline = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    chat_inline = {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}}
    doc = {"messages": [{"role": "user", "content": [inline, chat_inline, {"type": "text", "text": "file_id"}]}]}
    assert not demand_of(doc).stored_context


@pytest.mark.parametrize(
    "config",
    [
        {"generationConfig": {"thinkingConfig": {"thinking_budget": 30_000}}},
        {"generationConfig": {"thinking_config": {"thinkingBudget": 30_000}}},
        {"generation_config": {"thinking_config": {"thinkingBudget": 30_000}}},
        {"generation_config": {"thinkingConfig": {"thinking_budget": 30_000}}},
    ],
)
def test_a_gemini_thinking_budget_is_read_in_mixed_spellings(config: dict[str, Any]) -> None:
    # Proto JSON takes each field in either spelling, independently of its parent's.
    assert demand_of({"contents": [], **config}).thinking_budget == 30_000


def _every_spelling(doc: dict[str, Any]) -> tuple[object, ...]:
    """What the body sets, read the slow way: every spelling walked, in order, as demand_of
    did before it looked only under the top-level names the body has."""
    from sluice.pricing import demand as d

    def read(spellings: tuple[tuple[tuple[str, ...], str], ...], low: int, high: int) -> list[int]:
        found = []
        for path, name in spellings:
            value = d._at(doc, path)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, name)
            found.append(value)
        return found

    limits = read(d._OUTPUT_LIMITS, 1, MAX_OUTPUT_LIMIT)
    choices = read(d._CHOICES, 1, 128)
    budgets = read(d._THINKING, -1, MAX_OUTPUT_LIMIT)
    stored = any(doc.get(name) not in (None, "", {}) for name in d._STORED_CONTEXT) or d._refers_to_files(doc)
    return max(limits) if limits else None, max([0, *budgets]), max(choices) if choices else 1, stored


@_SETTINGS
@given(_docs)
def test_demand_of_reads_what_walking_every_spelling_reads(doc: dict[str, Any]) -> None:
    try:
        expected: tuple[object, ...] | str = _every_spelling(doc)
    except SluiceError as err:
        expected = err.message
    try:
        demand = demand_of(doc)
    except SluiceError as err:
        assert isinstance(expected, str) and f"'{expected}'" in err.message  # the same spelling refused first
        return
    assert (demand.output_limit, demand.thinking_budget, demand.choices, demand.stored_context) == expected
