"""Guardrails over a JSON body in any wire format: every string of the conversation (messages,
system, tool results, earlier tool calls' arguments) is scanned, and redacted in place.

Walking the parsed body works for every format without a translation (the strings that carry
content are strings in all of them); keys that never carry content (ids, types, signatures,
base64 media, tool definitions) are skipped. A string is a tool result when it sits under a
`tool_result` block (Anthropic), a `tool` message (OpenAI Chat), a `function_call_output` item
(Responses), a `functionResponse` part (Gemini) or a `toolResult` block (Bedrock Converse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluice.formats.json_body import MAX_DEPTH, too_deep
from sluice.guardrails.rules import Action, Finding, Recent, RuleSet
from sluice.guardrails.vault import Vault

_SKIP = frozenset(
    {
        "model", "id", "type", "role", "tool_use_id", "tool_call_id", "call_id", "signature", "cache_control",
        "media_type", "mime_type", "mimeType", "data", "tools", "tool_choice", "metadata", "stream",
        "encrypted_content", "thoughtSignature", "response_format", "text_format", "name",
    }
)  # fmt: skip
_TOOL_TYPES = frozenset({"tool_result", "function_call_output", "toolResult", "mcp_tool_result"})
_TOOL_KEYS = frozenset({"functionResponse", "toolResult"})


@dataclass(slots=True)
class Report:
    """What a guardrail pass found and did."""

    findings: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, keyed hash of the match)
    changed: bool = False
    replaced: dict[str, str] = field(default_factory=dict)  # value -> its placeholder

    @property
    def blocked(self) -> Finding | None:
        return next((f for f, _ in self.findings if f.action is Action.BLOCK), None)

    def events(self) -> list[dict[str, object]]:
        return [f.event(digest) for f, digest in self.findings]


def guard_text(
    text: str,
    where: str,
    rules: RuleSet,
    vault: Vault | None,
    report: Report,
    findings: tuple[tuple[Finding, str], ...] | None = None,
) -> str:
    if findings is None:
        findings = rules.scan(text, where)
    if not findings:
        return text
    report.findings.extend(findings)
    if vault is None or where == "answer":
        return text
    redact = sorted((f for f, _ in findings if f.action is Action.REDACT), key=lambda f: (f.start, -f.end))
    if not redact:
        return text
    out, last = [], 0
    for f in redact:
        if f.start < last:
            continue  # inside a span already replaced
        out.append(text[last : f.start])
        value = text[f.start : f.end]
        out.append(placeholder := vault.placeholder(f.kind, value))
        report.replaced[value] = placeholder
        last = f.end
    out.append(text[last:])
    report.changed = True
    return "".join(out)


# Agents' bodies nest a few tens deep; a deeper one is refused (never half-scanned) at the depth the
# gateway could not re-encode anyway (formats.json_body), with the same error.


def guard_doc(doc: dict[str, Any], rules: RuleSet, vault: Vault | None, session: str | None = None) -> Report:
    """Scans (and redacts, in place) every content string of a request body. With `session`, what
    was clean in the session's previous request (in walk order) is compared first."""
    report = Report()
    walk = _Walk(rules, vault, report, rules.recent_of(session) if session is not None else None)
    walk.node(doc, False, 0)
    if session is not None:
        rules.remember(session, Recent(walk.seen, walk.seen_tool))
    return report


class _Walk:
    """The hot loop of the request stage: hundreds of strings per agent request, nearly all of them
    sent in the previous turn. An agent resends its history as it was, with new messages after it,
    so each string is first compared with the next clean string of the session's previous request
    (a cursor in walk order: equal strings compare at memory speed, unequal ones mostly differ in
    length); a string that is not there is looked up in the rule set's clean strings (hashed once);
    only a string found in neither is scanned. Only strings no rule found anything in are kept, and
    only strings (which the garbage collector does not track: keeping the previous request's dicts
    alive made every full collection longer)."""

    __slots__ = (
        "at", "clean_request", "clean_tool", "prev", "prev_tool", "report", "rules", "seen", "seen_tool", "vault",
    )  # fmt: skip

    def __init__(self, rules: RuleSet, vault: Vault | None, report: Report, recent: Recent | None) -> None:
        self.rules, self.vault, self.report = rules, vault, report
        self.clean_request, self.clean_tool = rules.clean["request"], rules.clean["tool_result"]
        if recent is None:
            recent = Recent([], [])
        self.prev, self.prev_tool = recent.strings, recent.tool
        self.at = 0
        self.seen: list[str] = []  # this request's clean strings, in walk order
        self.seen_tool: list[bool] = []

    def node(self, node: Any, tool: bool, depth: int) -> Any:
        if type(node) is dict:
            return self.mapping(node, tool, depth)
        if type(node) is list:
            return self.sequence(node, tool, depth)
        if type(node) is str:
            return self.text(node, tool)
        return node

    def skipped(self, node: str, tool: bool) -> bool:
        """Whether `node` is the string after the cursor's: the previous request's string there
        was replaced (an edited message) or dropped, and the cursor moves past it. Without this,
        one edited string would leave the cursor behind and every string after it would be
        hashed and looked up. (An inserted string needs nothing: the cursor waits for the string
        after it.)"""
        at = self.at + 1
        prev = self.prev
        if at < len(prev) and node == prev[at] and self.prev_tool[at] is tool:
            self.at = at + 1
            self.seen.append(node)
            self.seen_tool.append(tool)
            return True
        return False

    def text(self, node: str, tool: bool) -> str:
        """A string that is not the next one of the previous request."""
        if node in (self.clean_tool if tool else self.clean_request):
            self.seen.append(node)
            self.seen_tool.append(tool)
            return node
        where = "tool_result" if tool else "request"
        findings = self.rules.scan(node, where)
        if not findings:
            self.seen.append(node)
            self.seen_tool.append(tool)
            return node
        return guard_text(node, where, self.rules, self.vault, self.report, findings)

    def mapping(self, node: dict[str, Any], tool: bool, depth: int) -> dict[str, Any]:
        if depth > MAX_DEPTH:
            raise too_deep()
        inner = tool or node.get("type") in _TOOL_TYPES or node.get("role") in ("tool", "function")
        prev, prev_tool = self.prev, self.prev_tool
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                if key in _SKIP:
                    continue
                at = self.at
                if at < len(prev) and value == prev[at] and prev_tool[at] is inner:
                    self.at = at + 1
                    self.seen.append(value)
                    self.seen_tool.append(inner)
                    continue
                if self.skipped(value, inner):
                    continue
                new: Any = self.text(value, inner)
            elif kind is dict:
                if key in _SKIP:
                    continue
                new = self.mapping(value, inner or key in _TOOL_KEYS, depth + 1)
            elif kind is list:
                if key in _SKIP:
                    continue
                new = self.sequence(value, inner or key in _TOOL_KEYS, depth + 1)
            else:
                continue
            if new is not value:
                node[key] = new
        return node

    def sequence(self, node: list[Any], tool: bool, depth: int) -> list[Any]:
        if depth > MAX_DEPTH:
            raise too_deep()
        prev, prev_tool = self.prev, self.prev_tool
        for i, value in enumerate(node):
            kind = type(value)
            if kind is str:
                at = self.at
                if at < len(prev) and value == prev[at] and prev_tool[at] is tool:
                    self.at = at + 1
                    self.seen.append(value)
                    self.seen_tool.append(tool)
                    continue
                if self.skipped(value, tool):
                    continue
                new: Any = self.text(value, tool)
            elif kind is dict:
                new = self.mapping(value, tool, depth + 1)
            elif kind is list:
                new = self.sequence(value, tool, depth + 1)
            else:
                continue
            if new is not value:
                node[i] = new
        return node


def restore_doc(node: Any, vault: Vault, depth: int = 0) -> tuple[Any, bool]:
    """Every placeholder in a whole answer's strings back to its value (tool-call arguments are
    strings in some formats, objects in others: both are walked)."""
    if depth > MAX_DEPTH:
        return node, False
    if isinstance(node, str):
        restored = vault.restore(node)
        return restored, restored is not node
    changed = False
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str | dict | list):
                new, did = restore_doc(value, vault, depth + 1)
                if did:
                    node[key], changed = new, True
    elif isinstance(node, list):
        for i, value in enumerate(node):
            if isinstance(value, str | dict | list):
                new, did = restore_doc(value, vault, depth + 1)
                if did:
                    node[i], changed = new, True
    return node, changed
