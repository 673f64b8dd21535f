"""The usage readers of every wire format report what the provider bills beyond plain tokens:
1-hour cache writes, server-side searches, the service tier, and the model that served."""

from __future__ import annotations

import orjson
import pytest

from sluice.core.types import Usage, WireFormat
from sluice.formats.anthropic import wire as anthropic_messages
from sluice.formats.openai_chat import wire as openai_chat
from sluice.formats.sse import encode
from sluice.metering import stream_observer, usage_of

ANTHROPIC_USAGE = {
    "input_tokens": 10,
    "output_tokens": 20,
    "cache_read_input_tokens": 30,
    "cache_creation_input_tokens": 40,
    "cache_creation": {"ephemeral_5m_input_tokens": 15, "ephemeral_1h_input_tokens": 25},
    "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
    "service_tier": "priority",
}


def test_anthropic_body_and_stream() -> None:
    # Fails on main without the fix: the 1-hour writes, searches, tier and model were dropped.
    body = orjson.dumps({"model": "claude-opus-5-5-20261101", "usage": ANTHROPIC_USAGE})
    usage = usage_of(WireFormat.ANTHROPIC_MESSAGES, body)
    assert usage == Usage(10, 20, 30, 40, cache_write_1h_tokens=25, web_searches=3)
    assert (usage.served_model, usage.service_tier, usage.reported) == ("claude-opus-5-5-20261101", "priority", True)
    start = {"type": "message_start", "message": {"model": "claude-opus-5-5", "usage": {"input_tokens": 10}}}
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": ANTHROPIC_USAGE}
    observer = stream_observer(WireFormat.ANTHROPIC_MESSAGES, False)
    for name, doc in (("message_start", start), ("message_delta", delta), ("message_stop", {"type": "message_stop"})):
        observer.feed(encode(orjson.dumps(doc), name))
    assert observer.usage.web_searches == 3 and observer.usage.cache_write_1h_tokens == 25
    assert observer.usage.served_model == "claude-opus-5-5" and observer.completed


def test_openai_chat_body_and_stream_carry_model_and_tier() -> None:
    doc = {
        "model": "gpt-5-2025-08-07",
        "service_tier": "priority",
        "usage": {"prompt_tokens": 5, "completion_tokens": 6},
    }
    usage = usage_of(WireFormat.OPENAI_CHAT, orjson.dumps(doc))
    assert usage == Usage(5, 6) and usage.served_model == "gpt-5-2025-08-07" and usage.service_tier == "priority"
    observer = stream_observer(WireFormat.OPENAI_CHAT, True)
    observer.feed(encode(orjson.dumps({**doc, "choices": []})) + openai_chat.DONE)
    assert observer.usage == Usage(5, 6) and observer.usage.service_tier == "priority"


def test_responses_counts_web_search_calls() -> None:
    response = {
        "model": "gpt-5",
        "service_tier": "default",
        "output": [{"type": "web_search_call", "id": "ws_1"}, {"type": "web_search_call"}, {"type": "message"}],
        "usage": {"input_tokens": 100, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 40}},
    }
    usage = usage_of(WireFormat.OPENAI_RESPONSES, orjson.dumps(response))
    assert usage == Usage(60, 7, 40, web_searches=2)
    observer = stream_observer(WireFormat.OPENAI_RESPONSES, False)
    observer.feed(encode(orjson.dumps({"type": "response.completed", "response": response}), "response.completed"))
    assert observer.usage.web_searches == 2 and observer.usage.served_model == "gpt-5"


def test_gemini_counts_grounding_queries_and_reads_the_model_version() -> None:
    doc = {
        "modelVersion": "gemini-2.5-pro-preview-06-05",
        "candidates": [{"finishReason": "STOP", "groundingMetadata": {"webSearchQueries": ["a", "b", "c"]}}],
        "usageMetadata": {"promptTokenCount": 50, "cachedContentTokenCount": 10, "candidatesTokenCount": 5},
    }
    usage = usage_of(WireFormat.GEMINI, orjson.dumps(doc))
    assert usage == Usage(40, 5, 10, web_searches=3) and usage.served_model == "gemini-2.5-pro-preview-06-05"
    observer = stream_observer(WireFormat.GEMINI, False)
    observer.feed(encode(orjson.dumps(doc)))
    assert observer.usage.web_searches == 3


@pytest.mark.parametrize(
    "wire", [WireFormat.ANTHROPIC_MESSAGES, WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES, WireFormat.GEMINI]
)
def test_an_answer_without_usage_says_so_and_hostile_counts_read_as_zero(wire: WireFormat) -> None:
    assert usage_of(wire, b'{"id": "x"}').reported is False
    hostile = {"input_tokens": "9" * 40, "output_tokens": -5, "prompt_tokens": True, "promptTokenCount": [1]}
    doc = {"usage": hostile, "usageMetadata": hostile, "model": 7}
    usage = usage_of(wire, orjson.dumps(doc))
    assert usage.total == 0 and usage.served_model == ""


def test_anthropic_reader_keeps_the_old_shape() -> None:
    assert anthropic_messages.usage_from({"input_tokens": 1, "output_tokens": 2}) == Usage(1, 2)
