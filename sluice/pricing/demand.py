"""What a request asks for that decides its worst-case cost: its output limit in every spelling
the APIs accept, how many choices it asks for, its thinking budget, the server-side searches it
may run, the service tier it asks for, and whether it asks to be answered later (unmetered).

Body fields are caller input: a limit that is not a positive integer, or is beyond any model's
maximum, is refused (400) rather than read as "no limit", and every spelling is read on every
surface, since an OpenAI-compatible upstream may honour a spelling its own API does not document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sluice.core.errors import ErrorKind, SluiceError

# No model generates more in one answer; a larger limit is a mistake or an attack.
MAX_OUTPUT_LIMIT = 10_000_000
# OpenAI's `n` goes up to 128 (https://platform.openai.com/docs/api-reference/chat/create#chat-create-n);
# Gemini's candidateCount is smaller.
MAX_CHOICES = 128
# Server-side searches reserved per search tool when the request sets no cap of its own; the
# settlement charges the searches the answer reports.
SEARCHES_RESERVED = 10
MAX_SEARCHES = 1000
_GROUNDING = frozenset(("googleSearch", "google_search", "googleSearchRetrieval", "google_search_retrieval"))

# (path, name shown in the error)
_OUTPUT_LIMITS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("max_tokens",), "max_tokens"),  # Anthropic, OpenAI Chat (legacy)
    (("max_completion_tokens",), "max_completion_tokens"),  # OpenAI Chat
    (("max_output_tokens",), "max_output_tokens"),  # OpenAI Responses
    (("maxOutputTokens",), "maxOutputTokens"),
    (("generationConfig", "maxOutputTokens"), "generationConfig.maxOutputTokens"),  # Gemini
    (("generationConfig", "max_output_tokens"), "generationConfig.max_output_tokens"),
    (("generation_config", "max_output_tokens"), "generation_config.max_output_tokens"),
    (("generation_config", "maxOutputTokens"), "generation_config.maxOutputTokens"),
    (("inferenceConfig", "maxTokens"), "inferenceConfig.maxTokens"),  # Bedrock Converse
)
_CHOICES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("n",), "n"),  # OpenAI Chat
    (("generationConfig", "candidateCount"), "generationConfig.candidateCount"),  # Gemini
    (("generationConfig", "candidate_count"), "generationConfig.candidate_count"),
    (("generation_config", "candidate_count"), "generation_config.candidate_count"),
    (("generation_config", "candidateCount"), "generation_config.candidateCount"),
)
_THINKING: tuple[tuple[tuple[str, ...], str], ...] = (
    (("thinking", "budget_tokens"), "thinking.budget_tokens"),  # Anthropic
    (("generationConfig", "thinkingConfig", "thinkingBudget"), "generationConfig.thinkingConfig.thinkingBudget"),
    (("generationConfig", "thinking_config", "thinking_budget"), "generationConfig.thinking_config.thinking_budget"),
    (("generation_config", "thinking_config", "thinking_budget"), "generation_config.thinking_config.thinking_budget"),
    (("generation_config", "thinkingConfig", "thinkingBudget"), "generation_config.thinkingConfig.thinkingBudget"),
)


@dataclass(frozen=True, slots=True)
class Demand:
    output_limit: int | None  # the largest output limit the request sets (thinking included), or None
    thinking_budget: int  # reasoning tokens the request allows beyond its visible output
    choices: int
    searches: int  # server-side searches the request may run
    service_tier: str
    speed: str
    background: bool  # answered at once with a queued response, without usage

    def output_tokens(self, default: int) -> int:
        """Output tokens to reserve: the limit (or `default` when none), at least the thinking
        budget (Anthropic's interleaved thinking may exceed max_tokens; Gemini counts thoughts as
        output), for every choice."""
        return max(self.output_limit or default, self.thinking_budget) * self.choices


def _at(doc: dict[str, Any], path: tuple[str, ...]) -> object:
    node: object = doc.get(path[0])
    for step in path[1:]:
        if not isinstance(node, dict):
            return None
        node = node.get(step)
    return node


def _integers(
    doc: dict[str, Any], spellings: tuple[tuple[tuple[str, ...], str], ...], *, low: int, high: int
) -> list[int]:
    found = []
    for path, name in spellings:
        value = _at(doc, path)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, f"'{name}' must be an integer.")
        if not low <= value <= high:
            raise SluiceError(
                ErrorKind.CALLER_BAD_REQUEST, f"'{name}' must be between {low} and {high}; it is {value}."
            )
        found.append(value)
    return found


def _searches(doc: dict[str, Any]) -> int:
    tools = doc.get("tools")
    total = 0
    if isinstance(tools, list):
        for tool in tools:
            if not isinstance(tool, dict):
                continue
            kind = tool.get("type")
            # Function tools (most of them: Claude Code sends two dozen) are not server-side.
            if kind == "custom" or kind == "function" or (kind is None and "name" in tool):
                continue
            if isinstance(kind, str) and kind.startswith("web_search"):  # Anthropic web_search_*, OpenAI web_search*
                uses = tool.get("max_uses")
                capped = isinstance(uses, int) and not isinstance(uses, bool) and 0 < uses <= MAX_SEARCHES
                total += uses if capped and isinstance(uses, int) else SEARCHES_RESERVED
            elif not _GROUNDING.isdisjoint(tool):
                total += SEARCHES_RESERVED  # Gemini grounding: billed per search query
    if isinstance(doc.get("web_search_options"), dict):  # Chat Completions search models: one search a call
        total += 1
    cap = doc.get("max_tool_calls")  # Responses: a cap on built-in tool calls in all
    if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0:
        total = min(total, cap)
    return total


def demand_of(doc: dict[str, Any]) -> Demand:
    limits = _integers(doc, _OUTPUT_LIMITS, low=1, high=MAX_OUTPUT_LIMIT)
    choices = _integers(doc, _CHOICES, low=1, high=MAX_CHOICES)
    # Gemini's thinkingBudget is -1 for "dynamic" and 0 for "off".
    budgets = _integers(doc, _THINKING, low=-1, high=MAX_OUTPUT_LIMIT)
    tier, speed = doc.get("service_tier"), doc.get("speed")
    return Demand(
        output_limit=max(limits) if limits else None,
        thinking_budget=max([0, *budgets]),
        choices=max(choices) if choices else 1,
        searches=_searches(doc),
        service_tier=tier if isinstance(tier, str) else "",
        speed=speed if isinstance(speed, str) else "",
        background=doc.get("background") is True,
    )
