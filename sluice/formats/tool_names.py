"""Tool names valid for the target: each format's rule for function names, and the stable,
reversible mapping that keeps a caller's tools callable on a provider with stricter rules.

A canonical tool's `name` is the caller's own (a Responses `namespace` function's flattened
`<namespace>__<name>`, see openai_responses_tools). Formats differ in what they accept: OpenAI
and Bedrock take 64 characters of `[A-Za-z0-9_-]`, Anthropic 128, Gemini 64 of
`[A-Za-z0-9_.:-]` starting with a letter or underscore. Claude Code's `mcp__<server>__<tool>`
names pass 64, Gemini-side names carry `.` and `:`, an OpenAI caller's may start with a digit.

- `target_name`: a name the target accepts is kept as it is; any other becomes its sanitised
  prefix and a short hash of the whole name (`mcp__github__..._3f9a0c12d4`), within the limit. A
  pure function of the name: every turn of a conversation maps a name the same way.
- `for_target`: the request as the target gets it, every place a name occurs (tool definitions,
  tool_choice, the history's calls and results) mapped with `target_name`.
- `caller_names`: the way back, from the request's tools (a hash cannot be undone): the calls of
  an answer, whole or streamed, name the caller's tools again, so its next request names them as
  it got them and the loop stays consistent.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from sluice.core.canonical import ChatRequest, Message, Part, ToolCall, ToolResult, Untranslatable

_SAFE = re.compile(r"[^A-Za-z0-9_-]")  # what every format accepts; anything else is replaced
_DIGEST = 10  # hex characters of SHA-256: collisions need ~10^6 tools in one request


@dataclass(frozen=True, slots=True)
class NameRule:
    """A format's rule for function names: the full pattern and its length limit."""

    valid: re.Pattern[str]
    limit: int
    letter_first: bool = False  # the first character must be a letter or an underscore


OPENAI = NameRule(re.compile(r"[A-Za-z0-9_-]{1,64}"), 64)
ANTHROPIC = NameRule(re.compile(r"[A-Za-z0-9_-]{1,128}"), 128)
GEMINI = NameRule(re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}"), 64, letter_first=True)
BEDROCK = NameRule(re.compile(r"[A-Za-z0-9_-]{1,64}"), 64)


def target_name(name: str, rule: NameRule) -> str:
    if rule.valid.fullmatch(name):
        return name
    hint = _SAFE.sub("_", name)
    if rule.letter_first and not (hint[:1].isascii() and (hint[:1].isalpha() or hint[:1] == "_")):
        hint = "_" + hint
    digest = hashlib.sha256(name.encode()).hexdigest()[:_DIGEST]
    return f"{hint[: rule.limit - _DIGEST - 1]}_{digest}"


def for_target(request: ChatRequest, rule: NameRule) -> ChatRequest:
    """`request` with every tool name valid for the target (itself when all of them already are).
    Raises Untranslatable when two of the caller's tools would get one name."""
    if all(rule.valid.fullmatch(n) for n in _names(request)):
        return request
    seen: dict[str, str] = {}
    tools = []
    for tool in request.tools:
        if tool.native is not None:  # a vendor tool keeps its vendor's name
            tools.append(tool)
            continue
        mapped = target_name(tool.name, rule)
        if seen.setdefault(mapped, tool.name) != tool.name:
            raise Untranslatable(f"the tools {seen[mapped]!r} and {tool.name!r} would have one name, {mapped!r}")
        tools.append(replace(tool, name=mapped) if mapped != tool.name else tool)
    choice = request.tool_choice
    if choice is not None and choice.name:
        choice = replace(choice, name=target_name(choice.name, rule))
    messages = [Message(m.role, [_renamed(p, rule) for p in m.parts]) for m in request.messages]
    return replace(request, tools=tools, tool_choice=choice, messages=messages)


def caller_names(request: ChatRequest, rule: NameRule) -> dict[str, str]:
    """The target's name -> the caller's, for each of the request's tools the target knows by
    another name (empty when it knows them all by theirs)."""
    back = {}
    for tool in request.tools:
        if tool.native is None and (mapped := target_name(tool.name, rule)) != tool.name:
            back[mapped] = tool.name
    return back


def _names(request: ChatRequest) -> list[str]:
    names = [t.name for t in request.tools if t.native is None]
    if request.tool_choice is not None and request.tool_choice.name:
        names.append(request.tool_choice.name)
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, ToolCall) or (isinstance(part, ToolResult) and part.name):
                names.append(part.name or "")
    return names


def _renamed(part: Part, rule: NameRule) -> Part:
    if isinstance(part, ToolCall):
        return replace(part, name=target_name(part.name, rule))
    if isinstance(part, ToolResult) and part.name:
        return replace(part, name=target_name(part.name, rule))
    return part
