"""Rules and the scan: which detector, where, with which action; findings with a keyed hash and the
length of what matched (never the content). Pure: no I/O, no clock, no logging."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple

from sluice.core.linear_regex import Finder, LinearPattern
from sluice.guardrails.injection import find_injection
from sluice.guardrails.pii import find_pii
from sluice.guardrails.rewrite import Rewritten
from sluice.guardrails.secrets import find_secrets
from sluice.guardrails.text import forget

Spans = list[tuple[int, int, str]]
# Audit events a request records (the count says how many findings there were in all). Only the
# first this many findings of a rule in one string get their keyed hash (the rest keep ""): a body
# crafted as a million e-mail addresses otherwise spent half its scan on hashes nobody records.
MAX_EVENTS = 50


class Action(StrEnum):
    AUDIT = "audit"  # record only
    REDACT = "redact"  # a stable placeholder goes to the provider, restored in the agent's tool calls
    BLOCK = "block"  # the request (or the stream) stops with an error naming the rule
    ALERT = "alert"  # recorded like audit, and flagged for the alert delivery


# Where a rule looks: the caller's prompt and system text, tool results inside the request, the
# provider's answer, MCP tool outputs passing through /mcp.
WHERES = ("request", "tool_result", "answer", "mcp")
DETECTORS: dict[str, Callable[[str], Spans]] = {
    "secrets": find_secrets,
    "pii": find_pii,
    "injection": find_injection,
}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    detector: str  # secrets | pii | injection | deny (terms) | regex (patterns)
    action: Action = Action.AUDIT
    where: frozenset[str] = frozenset(WHERES)
    kinds: frozenset[str] = frozenset()  # only these kinds of the detector (empty: all)
    # Only when the request goes to one of these providers ("no personal data to provider X"): such a
    # rule waits until the provider of an attempt is known (`RuleSet.for_provider`).
    providers: frozenset[str] = frozenset()
    pattern: Finder | None = None  # deny and regex rules, compiled once


def deny_list(name: str, terms: Iterable[str], **kw: object) -> Rule:
    """Whole words or phrases, case-insensitive (customer names, project code names)."""
    words = sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True)
    rx = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)
    return Rule(name, "deny", pattern=rx, **kw)  # type: ignore[arg-type]


def regex_rule(name: str, patterns: Iterable[str], **kw: object) -> Rule:
    """The operator's expressions, in RE2 (linear time: a caller chooses the text they run on).
    Deny lists stay on `re`: escaped literals, which cannot backtrack."""
    rx = LinearPattern.any_of(patterns)
    return Rule(name, "regex", pattern=rx, **kw)  # type: ignore[arg-type]


def default_rules() -> tuple[Rule, ...]:
    """The default set: secrets redacted everywhere they can be, personal data and injections
    recorded (audit) only."""
    return (
        Rule("secrets", "secrets", Action.REDACT),
        Rule("personal_data", "pii", Action.AUDIT, frozenset({"request", "tool_result", "answer"})),
        Rule("prompt_injection", "injection", Action.AUDIT, frozenset({"tool_result", "mcp"})),
    )


class Finding(NamedTuple):
    """A tuple, not a frozen dataclass: a body can hold a finding every few bytes, and a frozen
    dataclass's __init__ cost four times a tuple's (0.26 s per MB of e-mail addresses)."""

    rule: str
    action: Action
    where: str
    kind: str
    start: int
    end: int

    def event(self, digest: str) -> dict[str, object]:
        """The audit event: never the content, a keyed hash and the length of it."""
        return {
            "rule": self.rule,
            "action": self.action.value,
            "where": self.where,
            "kind": self.kind,
            "length": self.end - self.start,
            "hmac": digest,
        }


class _Held(tuple[tuple[Finding, str], ...]):
    __slots__ = ()


# What the per-string cache says of a string that holds part of a secret split across strings: no
# findings of its own (it is not scanned again), and not clean (it is not kept, and its junctions
# with the strings beside it are scanned on every request).
HELD = _Held()


@dataclass(frozen=True, slots=True)
class Recent:
    """The clean strings of a session's previous request, in walk order, and whether each was in a
    tool result; `cuts`: the positions p where the junction of strings[p - 1] and strings[p] is not
    known clean (a field's first string, a string dropped before it, a secret across it), all
    others were scanned and hold no secret across them; and, when its body was rewritten
    (something redacted), that rewrite's memo."""

    strings: list[str]
    tool: list[bool]
    cuts: list[int]
    rewritten: Rewritten | None = None
    # Per top-level list field (`messages`, `system`, `input`, `contents`…), its items by index:
    # each one all of whose strings were clean, with where they are in `strings`; None where an
    # item had findings or no strings.
    items: dict[str, list[Item | None]] = field(default_factory=dict)
    items_chars: int = 0  # what the items keep alive beyond `strings` (the sum of their `chars`)


class Item(NamedTuple):
    """A top-level item of a session's previous request that was clean: the item itself, where,
    `strings[start:end]` its content strings in walk order, and `encoded` its JSON when its walk
    order depends on its keys' order (a dict with two content values: `==` ignores key order, and
    the junctions between strings follow it), else None."""

    value: Any
    tool: bool  # whether it was in a tool result's place (a body that calls itself one)
    start: int
    end: int
    encoded: bytes | None
    chars: int  # unread strings (ids, media, signatures), `encoded`, and a charge per dict and list


@dataclass(slots=True)
class RuleSet:
    """Rules compiled for one key, team or access profile (rebuilt, caches empty, on a reload),
    with two bounded caches, because an agent resends its whole history every turn:
    - `clean[place]`: the strings found clean there, which the walk skips with one set lookup
      (the string is its own key: an exact match, and nothing a detector found is kept);
    - findings per string that had some, keyed by a keyed hash of the string (so the cache never
      holds a secret), each finding with the keyed hash of what it matched."""

    rules: tuple[Rule, ...]
    key: bytes = b"sluice-guardrails"  # keys the hashes in audit events and the placeholders
    restore: bool = True  # put redacted values back in the answers (the agent's tool calls)
    cache_entries: int = 8192
    max_cached_chars: int = 16 << 20  # bounds the memory the clean strings keep alive
    _found: OrderedDict[tuple[str, bytes], tuple[tuple[Finding, str], ...]] = field(default_factory=OrderedDict)
    clean: dict[str, set[str]] = field(default_factory=lambda: {w: set() for w in WHERES})
    _clean_chars: int = 0
    _total_recent: int = 0
    _scoped: dict[str, RuleSet] = field(default_factory=dict)
    _across: tuple[Rule, ...] | None = None
    # Per agent session, its previous request's clean strings in walk order (sluice.guardrails.walk).
    _recent: OrderedDict[str, Recent] = field(default_factory=OrderedDict)
    _recent_chars: dict[str, int] = field(default_factory=dict)
    recent_sessions: int = 1024
    max_recent_chars: int = 32 << 20

    def recent_of(self, session: str) -> Recent | None:
        return self._recent.get(session)

    def remember_rewrite(self, session: str, rewritten: Rewritten) -> None:
        """The request just remembered for `session` was rewritten so (see guardrails.rewrite)."""
        recent = self._recent.get(session)
        if recent is not None:
            self.remember(session, replace(recent, rewritten=rewritten))

    def remember(self, session: str, recent: Recent) -> None:
        """Bounded by sessions and characters kept; the least recent session goes first."""
        chars = sum(map(len, recent.strings)) + (len(recent.rewritten.body) if recent.rewritten else 0)
        chars += recent.items_chars
        self._total_recent += chars - self._recent_chars.pop(session, 0)
        self._recent.pop(session, None)
        if chars > self.max_recent_chars // 8:
            self._total_recent -= chars
            return  # one huge request would push out every other session
        self._recent[session] = recent
        self._recent_chars[session] = chars
        while len(self._recent) > self.recent_sessions or self._total_recent > self.max_recent_chars:
            old, _ = self._recent.popitem(last=False)
            self._total_recent -= self._recent_chars.pop(old)

    @property
    def across(self) -> tuple[Rule, ...]:
        """The rules the junctions between strings are scanned for: the secrets detector's."""
        if self._across is None:
            self._across = tuple(r for r in self.rules if r.detector == "secrets" and not r.providers)
        return self._across

    def hold(self, text: str, where: str) -> None:
        """`text` holds part of a secret split across strings: it is no longer kept as clean (the
        caches never hold a secret), and the per-string scan, which finds nothing in it, is not
        run on it again."""
        place = self.clean[where]
        if text in place:
            place.discard(text)
            self._clean_chars -= len(text)
        cache_key = (where, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self.key[:64]).digest())
        self._found[cache_key] = HELD
        while len(self._found) > self.cache_entries:
            self._found.popitem(last=False)

    def wants(self, where: str) -> bool:
        return any(where in r.where for r in self.rules)

    def digest(self, value: str) -> str:
        return hmac.new(self.key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]

    def for_provider(self, provider: str) -> RuleSet | None:
        """The rules scoped to `provider`, as a rule set of their own (built once per provider, so
        its caches carry over from one attempt and request to the next); None when there are none."""
        got = self._scoped.get(provider)
        if got is None and provider not in self._scoped:
            rules = tuple(replace(r, providers=frozenset()) for r in self.rules if provider in r.providers)
            got = RuleSet(rules, key=self.key, restore=self.restore) if rules else None
            if len(self._scoped) < 256:  # provider names come from the config, but bound it anyway
                self._scoped[provider] = got  # type: ignore[assignment]
        return got

    @staticmethod
    def _spans(text: str, rule: Rule) -> Spans:
        if rule.pattern is not None:
            return [(m.start(), m.end(), rule.name) for m in rule.pattern.finditer(text) if m.end() > m.start()]
        return DETECTORS[rule.detector](text)

    def scan(self, text: str, where: str, cache: bool = True) -> tuple[tuple[Finding, str], ...]:
        """The findings of every rule that applies here, each with the keyed hash of its match.
        `cache=False` for text that is not sent again (a streamed answer's windows)."""
        if not cache:
            return self._scan(text, where)
        if text in self.clean[where]:
            return ()
        cache_key = (where, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), key=self.key[:64]).digest())
        hit = self._found.get(cache_key)
        if hit is not None:
            self._found.move_to_end(cache_key)
            return hit
        findings = self._scan(text, where)
        if not findings:
            if len(text) <= self.max_cached_chars // 4:
                # Clean strings (nearly all of them) in a set the walk checks without a call.
                self.clean[where].add(text)
                self._clean_chars += len(text)
                strings = sum(map(len, self.clean.values()))
                if self._clean_chars > self.max_cached_chars or strings > self.cache_entries * 4:
                    for place in self.clean.values():  # rare: start over rather than keep an order
                        place.clear()
                    self._clean_chars = 0
            return findings
        self._found[cache_key] = findings
        while len(self._found) > self.cache_entries:
            self._found.popitem(last=False)
        return findings

    def _scan(self, text: str, where: str) -> tuple[tuple[Finding, str], ...]:
        found: list[tuple[Finding, str]] = []
        spans: dict[str, Spans] = {}  # per detector: two rules over one detector scan once
        for rule in self.rules:
            if where not in rule.where or rule.providers:
                continue  # a rule for some providers is scanned by `for_provider`'s set
            if rule.pattern is None:
                got = spans.get(rule.detector)
                if got is None:
                    got = spans[rule.detector] = self._spans(text, rule)
            else:
                got = self._spans(text, rule)
            hashed = 0
            for start, end, kind in got:
                if not rule.kinds or kind in rule.kinds:
                    finding = Finding(rule.name, rule.action, where, kind, start, end)
                    digest = self.digest(text[start:end]) if hashed < MAX_EVENTS else ""
                    hashed += 1
                    found.append((finding, digest))
        forget()
        return tuple(found)
