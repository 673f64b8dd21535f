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
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def merge(self, other: Usage) -> None:
        """Keep the largest figure seen per field: streams repeat cumulative counts."""
        self.input_tokens = max(self.input_tokens, other.input_tokens)
        self.output_tokens = max(self.output_tokens, other.output_tokens)
        self.cache_read_tokens = max(self.cache_read_tokens, other.cache_read_tokens)
        self.cache_write_tokens = max(self.cache_write_tokens, other.cache_write_tokens)

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments_json: str


@dataclass(slots=True)
class Completion:
    """A whole model answer in canonical form (used to render answers that no upstream made)."""

    id: str
    model: str
    text: str
    usage: Usage
    stop_reason: str = "end_turn"  # canonical: end_turn | max_tokens | tool_use | stop_sequence
    tool_calls: list[ToolCall] = field(default_factory=list)
