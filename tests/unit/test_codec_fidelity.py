"""Every field a translation writes is valid for the target API and model family: the real agents'
requests (tests/fixtures) translated for each vendor, checked against the vendors' documented limits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sluice.core.canonical import ChatRequest, Message, Reasoning, Text
from sluice.core.types import WireFormat
from sluice.formats.anthropic_codec import one_sampler_only
from sluice.formats.codecs import codec_for

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(path: str) -> dict[str, Any]:
    return json.loads((FIXTURES / path).read_text())  # type: ignore[no-any-return]


def translate(source: WireFormat, doc: dict[str, Any], target: WireFormat, model: str) -> dict[str, Any]:
    request = codec_for(source).decode_request(doc, model if source is WireFormat.GEMINI else None)
    request.model = model
    return codec_for(target).encode_request(request)


# --- end-user ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES])
def test_claude_codes_user_id_becomes_an_openai_user_of_at_most_64_characters(target: WireFormat) -> None:
    # "user: string too long. Expected a string with maximum length 64" (OpenAI's limit; the
    # Responses API's safety_identifier, which replaces it, has the same maxLength).
    doc = fixture("claude_code/messages_request.json")
    assert len(doc["metadata"]["user_id"]) > 64
    out = translate(WireFormat.ANTHROPIC_MESSAGES, doc, target, "gpt-5.5")
    assert 0 < len(out["user"]) <= 64
    again = translate(WireFormat.ANTHROPIC_MESSAGES, doc, target, "gpt-5.5")
    assert again["user"] == out["user"]  # stable: one end user stays one id for abuse monitoring


def test_a_short_user_id_goes_as_it_is() -> None:
    request = ChatRequest("gpt-5.5", [Message("user", [Text("hi")])], user="user-123")
    assert codec_for(WireFormat.OPENAI_CHAT).encode_request(request)["user"] == "user-123"


def test_bedrock_request_metadata_stays_in_its_pattern() -> None:
    doc = fixture("claude_code/messages_request.json")
    out = translate(WireFormat.ANTHROPIC_MESSAGES, doc, WireFormat.BEDROCK_CONVERSE, "amazon.nova-pro-v1:0")
    assert re.fullmatch(r"[a-zA-Z0-9\s:_@$#=/+,.-]{1,256}", out["requestMetadata"]["user"])


def test_anthropic_user_id_stays_within_256_characters() -> None:
    request = ChatRequest("claude-sonnet-4-6", [Message("user", [Text("hi")])], user="x" * 300)
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert len(out["metadata"]["user_id"]) <= 256


# --- Claude sampling and thinking rules ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "one"),
    [
        ("claude-opus-4-1", True),
        ("claude-opus-4-1-20250805", True),
        ("claude-sonnet-4-5-20250929", True),
        ("claude-sonnet-4-6", True),
        ("claude-haiku-4-5", True),
        ("claude-opus-5", True),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", True),
        ("claude-opus-4-20250514", False),
        ("claude-sonnet-4-20250514", False),
        ("claude-3-7-sonnet-20250219", False),
        ("claude-3-5-haiku-20241022", False),
    ],
)
def test_the_families_that_take_temperature_or_top_p_not_both(model: str, one: bool) -> None:
    assert one_sampler_only(model) is one


def test_gemini_clis_sampling_reaches_a_new_claude_model_as_it_accepts_it() -> None:
    # Gemini CLI sends temperature 1, topP 0.95, topK 64 and a thinking budget of 8192.
    doc = fixture("gemini_cli/stream_generate_content_request.json")
    out = translate(WireFormat.GEMINI, doc, WireFormat.ANTHROPIC_MESSAGES, "claude-sonnet-4-6")
    assert out["temperature"] == 1 and "top_p" not in out  # not both, on Sonnet 4.5+
    assert "top_k" not in out  # thinking refuses top_k
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert out["max_tokens"] > out["thinking"]["budget_tokens"]  # the budget must stay below max_tokens


def test_an_older_claude_model_keeps_both_samplers() -> None:
    request = ChatRequest("claude-sonnet-4-20250514", [Message("user", [Text("hi")])], temperature=0.5, top_p=0.9)
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert (out["temperature"], out["top_p"]) == (0.5, 0.9)


def test_thinking_gives_way_to_a_temperature_other_than_1() -> None:
    request = ChatRequest(
        "claude-sonnet-4-6", [Message("user", [Text("hi")])], temperature=0.2, reasoning=Reasoning(budget_tokens=4096)
    )
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert "thinking" not in out and out["temperature"] == 0.2


def test_a_thinking_budget_is_kept_below_the_callers_max_tokens() -> None:
    request = ChatRequest(
        "claude-sonnet-4-6", [Message("user", [Text("hi")])], max_tokens=5000, reasoning=Reasoning(budget_tokens=8192)
    )
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert out["max_tokens"] == 5000 and out["thinking"]["budget_tokens"] == 5000 - 1024


def test_with_thinking_top_p_outside_its_range_is_dropped() -> None:
    request = ChatRequest(
        "claude-sonnet-4-20250514", [Message("user", [Text("hi")])], top_p=0.5, reasoning=Reasoning(budget_tokens=2048)
    )
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert "top_p" not in out and out["thinking"]["budget_tokens"] == 2048
