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
from sluice.guardrails.rules import Action, Finding, RuleSet
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
    text: str, where: str, rules: RuleSet, vault: Vault | None, report: Report, provider: str | None = None
) -> str:
    findings = rules.scan(text, where, provider)
    if not findings:
        return text
    redact: list[Finding] = []
    for f in findings:
        report.findings.append((f, rules.digest(text[f.start : f.end])))
        if f.action is Action.REDACT and vault is not None and where != "answer":
            redact.append(f)
    if vault is None or not redact:
        return text
    redact.sort(key=lambda f: (f.start, -f.end))
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


def guard_doc(doc: dict[str, Any], rules: RuleSet, vault: Vault | None, provider: str | None = None) -> Report:
    """Scans (and redacts, in place) every content string of a request body."""
    report = Report()
    _walk(doc, False, rules, vault, report, provider, 0)
    return report


def _walk(
    node: Any, tool: bool, rules: RuleSet, vault: Vault | None, report: Report, provider: str | None, depth: int
) -> Any:
    if depth > MAX_DEPTH:
        raise too_deep()
    # The hot loop of the request stage (hundreds of strings per agent request, most of them seen
    # in the previous turn): a string known to be clean is skipped without a call.
    clean = rules.clean
    if type(node) is str:
        where = "tool_result" if tool else "request"
        if provider is None and (where, node) in clean:
            return node
        return guard_text(node, where, rules, vault, report, provider)
    if type(node) is dict:
        inner = tool or node.get("type") in _TOOL_TYPES or node.get("role") in ("tool", "function")
        where = "tool_result" if inner else "request"
        for key, value in node.items():
            kind = type(value)
            if kind is str:
                if key in _SKIP or (provider is None and (where, value) in clean):
                    continue
            elif (kind is not dict and kind is not list) or key in _SKIP:
                continue
            new = _walk(value, inner or key in _TOOL_KEYS, rules, vault, report, provider, depth + 1)
            if new is not value:
                node[key] = new
        return node
    if type(node) is list:
        where = "tool_result" if tool else "request"
        for i, value in enumerate(node):
            kind = type(value)
            if kind is str and provider is None and (where, value) in clean:
                continue
            if kind is str or kind is dict or kind is list:
                new = _walk(value, tool, rules, vault, report, provider, depth + 1)
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
