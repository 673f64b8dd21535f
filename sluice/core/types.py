"""Canonical, wire-independent types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class WireFormat(StrEnum):
    """A wire format spoken by an inbound surface or by a provider."""

    ANTHROPIC_MESSAGES = "anthropic_messages"
    OPENAI_CHAT = "openai_chat"
    OPENAI_RESPONSES = "openai_responses"
    GEMINI = "gemini"
    OPENAI_EMBEDDINGS = "openai_embeddings"
    BEDROCK_CONVERSE = "bedrock_converse"  # AWS Bedrock Converse API


class Operation(StrEnum):
    GENERATE = "generate"
    COUNT_TOKENS = "count_tokens"
    EMBED = "embed"


@dataclass(slots=True)
class Usage:
    """What an answer consumed, as the provider bills it.

    `cache_write_tokens` counts every cache write; `cache_write_1h_tokens` is the part of them
    written with the 1-hour lifetime (billed dearer). `web_searches` counts server-side searches
    (Anthropic web search, OpenAI web_search calls, Gemini grounding queries), billed per call.
    `served_model` and `service_tier` are what the answer says it was served by, when it says so.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    web_searches: int = 0
    # What the answer says about itself; not part of the amounts, so not compared.
    served_model: str = field(default="", compare=False)
    service_tier: str = field(default="", compare=False)
    reported: bool = field(default=False, compare=False)  # the answer carried a usage report at all
    # Why the answer ended, in the provider's own words (one per choice or candidate): "end_turn",
    # "stop", "length", "tool_calls", "MAX_TOKENS", "incomplete:max_output_tokens"... For traces
    # (`gen_ai.response.finish_reasons`) and the request log's attempts.
    finish_reasons: tuple[str, ...] = field(default=(), compare=False)

    def merge(self, other: Usage) -> None:
        """Keep the largest figure seen per field: streams repeat cumulative counts."""
        self.input_tokens = max(self.input_tokens, other.input_tokens)
        self.output_tokens = max(self.output_tokens, other.output_tokens)
        self.cache_read_tokens = max(self.cache_read_tokens, other.cache_read_tokens)
        self.cache_write_tokens = max(self.cache_write_tokens, other.cache_write_tokens)
        self.cache_write_1h_tokens = max(self.cache_write_1h_tokens, other.cache_write_1h_tokens)
        self.web_searches = max(self.web_searches, other.web_searches)
        self.served_model = other.served_model or self.served_model
        self.service_tier = other.service_tier or self.service_tier
        self.reported = self.reported or other.reported
        self.finish_reasons = other.finish_reasons or self.finish_reasons

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def prompt_tokens(self) -> int:
        """Every input token, cached or not: what long-context price tiers are decided by."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def finish_reason_of(value: object) -> tuple[str, ...]:
    """A provider's finish reason as recorded: a short string, anything else is no reason."""
    return (value[:64],) if isinstance(value, str) and value else ()


def count_of(value: object) -> int:
    """A count from a provider's usage report: a non-negative integer, anything else reads as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
