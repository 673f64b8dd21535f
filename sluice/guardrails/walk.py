"""Guardrails over a JSON body in any wire format: every string of the conversation (messages,
system, tool results, earlier tool calls' arguments) is scanned, and redacted in place.

Walking the parsed body works for every format without a translation (the strings that carry
content are strings in all of them); keys that never carry content (ids, types, signatures,
base64 media, tool definitions) are skipped. A string is a tool result when it sits under a
`tool_result` block (Anthropic), a `tool` message (OpenAI Chat), a `function_call_output` item
(Responses), a `functionResponse` part (Gemini) or a `toolResult` block (Bedrock Converse).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.formats.json_body import MAX_DEPTH, too_deep
from sluice.guardrails.rules import HELD, Action, Finding, Item, Recent, RuleSet
from sluice.guardrails.secrets import find_across_all
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
    # A value split across strings was redacted in parts, each in its own string only (a part may
    # be a single character: it cannot be replaced wherever it occurs): the body is re-encoded.
    split: bool = False

    @property
    def blocked(self) -> Finding | None:
        return next((f for f, _ in self.findings if f.action is Action.BLOCK), None)

    def events(self) -> list[dict[str, object]]:
        """One per finding that was hashed (rules.MAX_EVENTS of each rule in each string): a
        finding without its hash is counted, never recorded without it."""
        return [f.event(digest) for f, digest in self.findings if digest]


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
    spans = [(f.start, f.end, f.kind, True) for f, _ in findings if f.action is Action.REDACT]
    return redact(text, spans, vault, report) if spans else text


def redact(text: str, spans: list[tuple[int, int, str, bool]], vault: Vault, report: Report) -> str:
    """`text` with each span `(start, end, kind, whole)` replaced by a placeholder that restores
    exactly what it replaced. A whole value goes wherever else it occurs in the body too
    (`report.replaced`); a part of a value split across strings is replaced here only. Spans that
    overlap become one placeholder for their union (restoring it gives the text back), so no
    character of either stays in clear; each whole value among them still goes elsewhere."""
    spans.sort(key=lambda s: (s[0], -s[1]))
    out: list[str] = []
    last, i, n = 0, 0, len(spans)
    while i < n:
        start, end, kind, whole = spans[i]
        j = i + 1
        while j < n and spans[j][0] < end:  # overlapping: one placeholder for the union
            end = max(end, spans[j][1])
            whole = whole and spans[j][3]
            j += 1
        value = text[start:end]
        placeholder = vault.placeholder(kind, value)
        out += (text[last:start], placeholder)
        if whole:
            report.replaced[value] = placeholder
        else:
            report.split = True
        if j > i + 1:
            for s, e, k, w in spans[i:j]:
                if w and (s, e) != (start, end):
                    report.replaced.setdefault(text[s:e], vault.placeholder(k, text[s:e]))
        last, i = end, j
    out.append(text[last:])
    report.changed = True
    return "".join(out)


# Agents' bodies nest a few tens deep; a deeper one is refused (never half-scanned) at the depth the
# gateway could not re-encode anyway (formats.json_body), with the same error.


def guard_doc(doc: dict[str, Any], rules: RuleSet, vault: Vault | None, session: str | None = None) -> Report:
    """Scans (and redacts, in place) every content string of a request body, and the junctions
    between consecutive strings of each top-level field (a secret split across two). With
    `session`, what was clean in the session's previous request (in walk order) is compared first."""
    report = Report()
    walk = _Walk(rules, vault, report, rules.recent_of(session) if session is not None else None)
    walk.top(doc)
    cuts = walk.finish(doc)
    if session is not None:
        items, chars = walk.kept_items()
        rules.remember(session, Recent(walk.seen, walk.seen_tool, cuts, items=items, items_chars=chars))
    return report


class _Walk:
    """The hot loop of the request stage: hundreds of strings per agent request, nearly all of them
    sent in the previous turn. An agent resends its history as it was, with new messages after it,
    so each string is first compared with the next clean string of the session's previous request
    (a cursor in walk order: equal strings compare at memory speed, unequal ones mostly differ in
    length); a string that is not there is looked up in the rule set's clean strings (hashed once);
    only a string found in neither is scanned. Only strings no rule found anything in are kept, and
    only strings (which the garbage collector does not track: keeping the previous request's dicts
    alive made every full collection longer).

    `seen` lists every content string during the walk (the junction scan reads them in order); the
    ones with findings, or holding part of a secret split across strings, are taken out before
    it is kept. Findings are applied after the walk, once the junctions are scanned too."""

    __slots__ = (
        "at", "breaks", "clean_request", "clean_tool", "cuts", "dirty", "fields", "held", "items", "prev",
        "prev_items", "prev_tool", "removed", "report", "rules", "seen", "seen_tool", "vault",
    )  # fmt: skip

    def __init__(self, rules: RuleSet, vault: Vault | None, report: Report, recent: Recent | None) -> None:
        self.rules, self.vault, self.report = rules, vault, report
        self.clean_request, self.clean_tool = rules.clean["request"], rules.clean["tool_result"]
        if recent is None:
            recent = Recent([], [], [])
        self.prev, self.prev_tool, self.cuts = recent.strings, recent.tool, recent.cuts
        self.prev_items = recent.items
        # Top-level items walked or found: (field, index, the item or its Item, in a tool result, walk
        # index range).
        self.items: list[tuple[str, int, Any, bool, int, int]] = []
        self.at = 0
        self.seen: list[str] = []  # this request's content strings, in walk order
        self.seen_tool: list[bool] = []
        # Strings not found at the cursor (walk index, cursor after it): their junctions are new.
        self.breaks: list[tuple[int, int]] = []
        self.fields: list[int] = []  # walk index of each top-level field's first string
        self.dirty: list[tuple[int, str, tuple[tuple[Finding, str], ...], Any, Any]] = []
        self.held: list[int] = []
        self.removed: list[int] = []

    def top(self, doc: dict[str, Any]) -> None:
        """The body: each top-level field's strings are one run for the junction scan."""
        inner = doc.get("type") in _TOOL_TYPES or doc.get("role") in ("tool", "function")
        fields = self.fields
        for key, value in doc.items():
            if key in _SKIP:
                continue
            kind = type(value)
            if kind is str:
                fields.append(len(self.seen))
                self.string(value, inner, doc, key)
            elif kind is dict:
                fields.append(len(self.seen))
                self.mapping(value, inner or key in _TOOL_KEYS, 1)
            elif kind is list:
                fields.append(len(self.seen))
                self.items_of(key, value, inner or key in _TOOL_KEYS)

    def items_of(self, field: str, node: list[Any], tool: bool) -> None:
        """A top-level list (a conversation: `messages`, `system`, `input`, `contents`…): an item
        equal to the previous request's item at its index, all of whose strings were clean then,
        is not walked: its strings are the ones it had (one `==` at C speed, where walking an item
        costs a Python call per object in it, and a conversation is hundreds of them). The rest is
        walked as `sequence` would."""
        old = self.prev_items.get(field)
        prev, prev_tool, seen = self.prev, self.prev_tool, self.seen
        items = self.items
        for i, value in enumerate(node):
            kind = type(value)
            if kind is str:
                self.string(value, tool, node, i)
                continue
            if kind is not dict and kind is not list:
                continue
            w = len(seen)
            item = old[i] if old is not None and i < len(old) else None
            if (
                item is not None
                and item.tool is tool
                and value == item.value
                and (item.encoded is None or _encoded(value) == item.encoded)
            ):
                a, b = item.start, item.end
                if self.at != a:  # found elsewhere than at the cursor: the junction before it is new
                    self.breaks.append((w, -a - 1))
                seen += prev[a:b]
                self.seen_tool += prev_tool[a:b]
                self.at = b
                items.append((field, i, item, tool, w, w + b - a))
                continue
            if kind is dict:
                self.mapping(value, tool, 2)
            else:
                self.sequence(value, tool, 2)
            items.append((field, i, value, tool, w, len(seen)))

    def string(self, node: str, tool: bool, container: Any, key: Any) -> None:
        """A string at the top of the body or of a top-level list (few: `mapping` and `sequence`,
        which see nearly all of them, compare with the cursor inline, a call fewer per string)."""
        at = self.at
        if at < len(self.prev) and node == self.prev[at] and self.prev_tool[at] is tool:
            self.at = at + 1
            self.seen.append(node)
            self.seen_tool.append(tool)
        elif not self.skipped(node, tool):
            self.text(node, tool, container, key)

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
            self.breaks.append((len(self.seen), -at - 1))  # negative: found one place further on
            self.seen.append(node)
            self.seen_tool.append(tool)
            return True
        return False

    def text(self, node: str, tool: bool, container: Any, key: Any) -> None:
        """A string that is not the next one of the previous request."""
        w = len(self.seen)
        self.breaks.append((w, self.at))
        self.seen.append(node)
        self.seen_tool.append(tool)
        if node in (self.clean_tool if tool else self.clean_request):
            return
        where = "tool_result" if tool else "request"
        findings = self.rules.scan(node, where)
        if findings:
            self.dirty.append((w, where, findings, container, key))
        elif findings is HELD:
            self.held.append(w)

    def mapping(self, node: dict[str, Any], tool: bool, depth: int) -> None:
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
                if not self.skipped(value, inner):
                    self.text(value, inner, node, key)
            elif kind is dict:
                if key not in _SKIP:
                    self.mapping(value, inner or key in _TOOL_KEYS, depth + 1)
            elif kind is list:
                if key not in _SKIP:
                    self.sequence(value, inner or key in _TOOL_KEYS, depth + 1)

    def sequence(self, node: list[Any], tool: bool, depth: int) -> None:
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
                if not self.skipped(value, tool):
                    self.text(value, tool, node, i)
            elif kind is dict:
                self.mapping(value, tool, depth + 1)
            elif kind is list:
                self.sequence(value, tool, depth + 1)

    def junctions(self) -> list[int]:
        """The junctions (j: between strings j - 1 and j) not known clean: around each string not
        found at the cursor, before each found one place further on (the string between is gone),
        and where the previous request had a cut inside a run of strings found at the cursor one
        after another (elsewhere in such a run, the two strings of a junction were the previous
        request's two strings of it, scanned then)."""
        n = len(self.seen)
        new = set()
        cuts = self.cuts
        start, delta = 0, 0  # a run from walk index `start`, at cursor position w + delta
        for b, after in [*self.breaks, (n, 0)]:
            if cuts and b - start >= 2:
                lo, hi = start + 1 + delta, b - 1 + delta
                for p in cuts[bisect_left(cuts, lo) : bisect_right(cuts, hi)]:
                    new.add(p - delta)
            new.add(b)
            if after < 0:  # found further on: it starts a run, at cursor position -after - 1
                start, delta = b, -after - 1 - b
            else:
                new.add(b + 1)
                start, delta = b + 1, after - (b + 1)
        return sorted(j for j in new if 0 < j < n)

    def finish(self, doc: dict[str, Any]) -> list[int]:
        """After the walk: the junctions scanned, the findings applied (strings redacted in place),
        the strings that must not be kept taken out of `seen`; returns the cuts to remember."""
        rules, vault, report, seen = self.rules, self.vault, self.report, self.seen
        across = rules.across
        found = find_across_all(seen, self.fields, self.junctions()) if across and len(seen) > 1 else []
        crossed: set[int] = set()  # junctions a secret spans
        parts_in: dict[int, list[tuple[int, int, str, str, bool]]] = {}  # index -> (start, end, kind, rule, redact)
        late: list[tuple[Finding, str]] = []
        for kind, parts, first, last in found:
            value = "".join(seen[i][a:b] for i, a, b in parts)
            where = "tool_result" if any(self.seen_tool[i] for i, _, _ in parts) else "request"
            for rule in across:
                if where not in rule.where or (rule.kinds and kind not in rule.kinds):
                    continue
                start = parts[0][1]
                late.append(
                    (Finding(rule.name, rule.action, where, kind, start, start + len(value)), rules.digest(value))
                )
                crossed.update(range(first + 1, last + 1))
                redacting = rule.action is Action.REDACT and vault is not None
                if redacting and vault is not None:
                    report.replaced[value] = vault.placeholder(kind, value)  # where it occurs whole, too
                for i, a, b in parts:
                    parts_in.setdefault(i, []).append((a, b, kind, rule.name, redacting))
        dirty_at = {w: (where, findings, container, key) for w, where, findings, container, key in self.dirty}
        places: list[tuple[Any, Any]] | None = None
        for w, mine in parts_in.items():
            entry = dirty_at.pop(w, None)
            if entry is None:
                where = "tool_result" if self.seen_tool[w] else "request"
                rules.hold(seen[w], where)
                self.held.append(w)
                if places is None:
                    places = _places(doc)
                container, key = places[w]
                own: tuple[tuple[Finding, str], ...] = ()
            else:
                where, own, container, key = entry
                self.held.append(w)  # taken out with the dirty ones (listed twice: a set below)
            # A finding of the string's own that a part of a split value covers is that value's.
            own = tuple(
                (f, d) for f, d in own if not any(f.rule == r and a <= f.start and f.end <= b for a, b, _, r, _ in mine)
            )
            report.findings.extend(own)
            spans = [(f.start, f.end, f.kind, True) for f, _ in own if f.action is Action.REDACT]
            spans += [(a, b, kind, False) for a, b, kind, _, redacting in mine if redacting]
            if vault is not None and spans:
                container[key] = redact(seen[w], spans, vault, report)
        for _, where, findings, container, key in (e for e in self.dirty if e[0] in dirty_at):
            text = container[key]
            new = guard_text(text, where, rules, vault, report, findings)
            if new is not text:
                container[key] = new
        report.findings.extend(late)
        return self.keep(crossed) if across else self.keep(set(), cuts=False)

    def keep(self, crossed: set[int], cuts: bool = True) -> list[int]:
        """Takes the strings that must not be kept out of `seen`; the cuts, in its positions after."""
        removed = self.removed = sorted({w for w, *_ in self.dirty}.union(self.held))
        n = len(self.seen)
        out: list[int] = []
        if cuts:
            gone = set(removed)
            marks = set(self.fields).union(crossed, (w + 1 for w in removed))
            out = sorted(w - bisect_left(removed, w) for w in marks if w < n and w not in gone)
        for w in reversed(removed):
            del self.seen[w]
            del self.seen_tool[w]
        return out

    def kept_items(self) -> tuple[dict[str, list[Item | None]], int]:
        """After `keep`: the top-level items whose strings are all kept (none had findings or held
        part of a secret), at their places in the kept strings; and what they keep alive beyond
        those strings, in characters."""
        removed = self.removed
        out: dict[str, list[Item | None]] = {}
        chars = 0
        for name, i, value, tool, wa, wb in self.items:
            row = out.setdefault(name, [])
            if len(row) < i:
                row += [None] * (i - len(row))  # strings and scalars between items
            k = bisect_left(removed, wa)
            if wa == wb or bisect_left(removed, wb) != k:
                row.append(None)
                continue
            if type(value) is Item:  # found unchanged: kept as it was, where its strings are now
                item = value if value.start == wa - k else value._replace(start=wa - k, end=wb - k)
            else:
                ordered, extra = _shape(value)
                encoded = None
                if ordered:
                    try:
                        encoded = _encoded(value)
                    except orjson.JSONEncodeError:
                        row.append(None)
                        continue
                    extra += len(encoded)
                item = Item(value, tool, wa - k, wb - k, encoded, extra)
            chars += item.chars
            row.append(item)
        return out, chars


def _encoded(value: Any) -> bytes:
    return orjson.dumps(value)


# What a dict or list kept alive by a remembered item is charged, in characters of the memo's bound:
# about its size in memory, and what bounds the objects the garbage collector's full passes visit
# (32 MiB of memo: at most 131,072 of them, a few ms per full pass).
CONTAINER_CHARS = 256


def _shape(node: Any, unread: bool = False) -> tuple[bool, int]:
    """(whether the walk's order of `node`'s strings depends on its dicts' key order: a dict with
    two or more values the walk reads; what keeping `node` costs beyond its strings the walk reads,
    in characters: the strings it does not read, and CONTAINER_CHARS per dict and list)."""
    ordered, chars = False, CONTAINER_CHARS
    values: Any
    if type(node) is dict:
        read = 0
        for key, value in node.items():
            kind = type(value)
            skip = unread or key in _SKIP
            if kind is str:
                if skip:
                    chars += len(value)
                else:
                    read += 1
            elif kind is dict or kind is list:
                read += not skip
                o, c = _shape(value, skip)
                ordered, chars = ordered or o, chars + c
        return ordered or read > 1, chars
    values = node
    for value in values:
        kind = type(value)
        if kind is str:
            chars += len(value) if unread else 0
        elif kind is dict or kind is list:
            o, c = _shape(value, unread)
            ordered, chars = ordered or o, chars + c
    return ordered, chars


def _places(doc: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(container, key) of every content string, in the walk's order (only when a secret split
    across strings is redacted: the walk itself keeps none)."""
    out: list[tuple[Any, Any]] = []

    def visit(node: Any) -> None:
        if type(node) is dict:
            for key, value in node.items():
                if key in _SKIP:
                    continue
                if type(value) is str:
                    out.append((node, key))
                elif type(value) is dict or type(value) is list:
                    visit(value)
        else:
            for i, value in enumerate(node):
                if type(value) is str:
                    out.append((node, i))
                elif type(value) is dict or type(value) is list:
                    visit(value)

    visit(doc)
    return out


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
