"""What a request asks for that decides its worst-case cost: its output limit in every spelling
the APIs accept, how many choices it asks for, its thinking budget, the server-side searches it
may run, the service tier it asks for, and whether it asks to be answered later (unmetered).

Body fields are caller input: a limit that is not a positive integer, or is beyond any model's
maximum, is refused (400) rather than read as "no limit", and every spelling is read on every
surface, since an OpenAI-compatible upstream may honour a spelling its own API does not document.
Input stored at the provider (an earlier response, a stored prompt, cached content, an uploaded
file) or fetched by it (a document by URL) is reserved for as a whole context window, since the
body does not show how large it is.
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
# Input the body refers to instead of carrying: an earlier response or conversation (Responses
# `previous_response_id`, `conversation`), a stored prompt (`prompt`), Gemini cached content. The
# provider bills it as this request's input, up to the model's context window; this many tokens
# stand for a window the price data does not give.
STORED_CONTEXT_TOKENS = 200_000
_STORED_CONTEXT = ("previous_response_id", "conversation", "prompt", "cachedContent", "cached_content")
# Where a request's content parts are, on each surface: messages[].content[] (OpenAI Chat,
# Anthropic, with tool results one level down), input[].content[] (Responses), contents[].parts[]
# (Gemini).
_TURNS = ("messages", "input", "contents")
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
    # Proto JSON takes each field in either spelling, whatever its parent's spelling.
    (("generationConfig", "thinkingConfig", "thinking_budget"), "generationConfig.thinkingConfig.thinking_budget"),
    (("generationConfig", "thinking_config", "thinkingBudget"), "generationConfig.thinking_config.thinkingBudget"),
    (("generation_config", "thinking_config", "thinkingBudget"), "generation_config.thinking_config.thinkingBudget"),
    (("generation_config", "thinkingConfig", "thinking_budget"), "generation_config.thinkingConfig.thinking_budget"),
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
    stored_context: bool = False  # input the body only refers to (stored at or fetched by the provider)

    def input_tokens(self, body_estimate: int, context_window: int | None) -> int:
        """Input tokens to reserve: the body's estimate, or a whole context window when the
        request refers to input stored at the provider."""
        if not self.stored_context:
            return body_estimate
        return max(body_estimate, context_window or STORED_CONTEXT_TOKENS)

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
    doc: dict[str, Any],
    present: frozenset[str],
    spellings: tuple[tuple[tuple[str, ...], str], ...],
    *,
    low: int,
    high: int,
) -> list[int]:
    """The values of the spellings the body sets, in the spellings' order (so the first bad one
    is the one refused). `present`: the body's top-level names that start some spelling; a
    spelling under any other name is not there, and is not walked."""
    found = []
    for path, name in spellings:
        if path[0] not in present:
            continue
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


def _by_reference(part: dict[str, Any]) -> bool:
    """Whether a content part points at input instead of carrying it: a file uploaded to the
    provider or fetched by URL, billed as input however few bytes the part has (a PDF's every
    page, a video's every frame)."""
    if part.get("file_id") or part.get("file_url"):  # Responses input_file
        return True
    file = part.get("file")  # Chat Completions file part
    if isinstance(file, dict) and file.get("file_id"):
        return True
    source = part.get("source")  # Anthropic document and image sources
    if isinstance(source, dict) and source.get("type") in ("url", "file"):
        return True
    return isinstance(part.get("fileData"), dict) or isinstance(part.get("file_data"), dict)  # Gemini


# The keys a part that points at a file has (checked first, in C, before the part is looked at).
_REFERENCE_KEYS = frozenset(("file_id", "file_url", "file", "source", "fileData", "file_data"))


def _any_by_reference(parts: object) -> bool:
    if not isinstance(parts, list):
        return False
    for part in parts:
        if isinstance(part, dict) and not _REFERENCE_KEYS.isdisjoint(part) and _by_reference(part):
            return True
    return False


def _refers_to_files(doc: dict[str, Any]) -> bool:
    """Whether any content part (or a tool result's part) points at a file. Run on every
    generation request, so it touches as little as it can."""
    for name in _TURNS:
        turns = doc.get(name)
        if not isinstance(turns, list):
            continue
        for turn in turns:
            # OpenAI's and Anthropic's assistant turns hold no files (text, tool calls, thinking).
            if not isinstance(turn, dict) or turn.get("role") == "assistant":
                continue
            parts = turn.get("content")
            if not isinstance(parts, list):
                parts = turn.get("parts")
                if not isinstance(parts, list):
                    continue
            if _any_by_reference(parts):
                return True
            for part in parts:
                if (
                    isinstance(part, dict)
                    and isinstance(part.get("content"), list)
                    and _any_by_reference(part["content"])
                ):
                    return True
    return False


# Every top-level name a spelling starts with, and those of input stored at the provider: one set
# operation in C finds the few a body has, so the two dozen spellings of other APIs cost nothing.
_FIRST_NAMES = frozenset(path[0] for path, _ in (*_OUTPUT_LIMITS, *_CHOICES, *_THINKING))
_STORED_NAMES = frozenset(_STORED_CONTEXT)


def demand_of(doc: dict[str, Any]) -> Demand:
    present = _FIRST_NAMES.intersection(doc)
    limits = _integers(doc, present, _OUTPUT_LIMITS, low=1, high=MAX_OUTPUT_LIMIT) if present else []
    choices = _integers(doc, present, _CHOICES, low=1, high=MAX_CHOICES) if present else []
    # Gemini's thinkingBudget is -1 for "dynamic" and 0 for "off".
    budgets = _integers(doc, present, _THINKING, low=-1, high=MAX_OUTPUT_LIMIT) if present else []
    stored = not _STORED_NAMES.isdisjoint(doc) and any(doc.get(name) not in (None, "", {}) for name in _STORED_CONTEXT)
    tier, speed = doc.get("service_tier"), doc.get("speed")
    return Demand(
        output_limit=max(limits) if limits else None,
        thinking_budget=max([0, *budgets]),
        choices=max(choices) if choices else 1,
        searches=_searches(doc),
        service_tier=tier if isinstance(tier, str) else "",
        speed=speed if isinstance(speed, str) else "",
        background=doc.get("background") is True,
        stored_context=stored or _refers_to_files(doc),
    )
