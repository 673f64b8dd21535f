"""Rules and the scan: which detector, where, with which action; findings with a keyed hash and the
length of what matched (never the content). Pure: no I/O, no clock, no logging."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from sluice.guardrails.injection import find_injection
from sluice.guardrails.pii import find_pii
from sluice.guardrails.secrets import find_secrets

Spans = list[tuple[int, int, str]]


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
    # Only when the request goes to one of these providers ("no personal data to provider X").
    providers: frozenset[str] = frozenset()
    pattern: re.Pattern[str] | None = None  # deny and regex rules, compiled once

    def applies(self, where: str, provider: str | None) -> bool:
        if where not in self.where:
            return False
        # A rule for some providers waits until the provider is known (`RequestGuard.to_provider`).
        return not self.providers or provider in self.providers


def deny_list(name: str, terms: Iterable[str], **kw: object) -> Rule:
    """Whole words or phrases, case-insensitive (customer names, project code names)."""
    words = sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True)
    rx = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)
    return Rule(name, "deny", pattern=rx, **kw)  # type: ignore[arg-type]


def regex_rule(name: str, patterns: Iterable[str], **kw: object) -> Rule:
    rx = re.compile("|".join(f"(?:{p})" for p in patterns))
    return Rule(name, "regex", pattern=rx, **kw)  # type: ignore[arg-type]


def default_rules() -> tuple[Rule, ...]:
    """The default set: secrets redacted everywhere they can be, personal data and injections
    recorded (audit) only."""
    return (
        Rule("secrets", "secrets", Action.REDACT),
        Rule("personal_data", "pii", Action.AUDIT, frozenset({"request", "tool_result", "answer"})),
        Rule("prompt_injection", "injection", Action.AUDIT, frozenset({"tool_result", "mcp"})),
    )


@dataclass(frozen=True, slots=True)
class Finding:
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


@dataclass(slots=True)
class RuleSet:
    """Rules compiled for one key, team or access profile, with a bounded cache of detector results
    per string: an agent resends its whole history every turn, so most strings were seen before."""

    rules: tuple[Rule, ...]
    key: bytes = b"sluice-guardrails"  # keys the hashes in audit events and the placeholders
    restore: bool = True  # put redacted values back in the answers (the agent's tool calls)
    cache_entries: int = 8192
    max_cached_chars: int = 16 << 20  # bounds the memory the cache keeps alive (strings are shared)
    min_cached: int = 1  # a dict lookup is cheaper than scanning even a short string (~20 expressions)
    _cache: OrderedDict[tuple[str, str | None, str], tuple[Finding, ...]] = field(default_factory=OrderedDict)
    _cached_chars: int = 0
    clean: set[tuple[str, str]] = field(default_factory=set)  # (place, string) with no finding
    _clean_chars: int = 0

    def wants(self, where: str) -> bool:
        return any(where in r.where for r in self.rules)

    def digest(self, value: str) -> str:
        return hmac.new(self.key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]

    @staticmethod
    def _spans(text: str, rule: Rule) -> Spans:
        if rule.pattern is not None:
            return [(m.start(), m.end(), rule.name) for m in rule.pattern.finditer(text) if m.end() > m.start()]
        return DETECTORS[rule.detector](text)

    def scan(self, text: str, where: str, provider: str | None = None) -> tuple[Finding, ...]:
        """The findings of every rule that applies here; cached per (place, provider, string)."""
        cache_key = (where, provider, text)
        hit = self._cache.get(cache_key)
        if hit is not None:
            self._cache.move_to_end(cache_key)
            return hit
        found: list[Finding] = []
        spans: dict[str, Spans] = {}  # per detector: two rules over one detector scan once
        for rule in self.rules:
            if not rule.applies(where, provider):
                continue
            if rule.pattern is None:
                got = spans.get(rule.detector)
                if got is None:
                    got = spans[rule.detector] = self._spans(text, rule)
            else:
                got = self._spans(text, rule)
            for start, end, kind in got:
                if not rule.kinds or kind in rule.kinds:
                    found.append(Finding(rule.name, rule.action, where, kind, start, end))
        findings = tuple(found)
        if not findings and provider is None and len(text) <= self.max_cached_chars // 4:
            # Clean strings (nearly all of them) in a set the walk checks without a call.
            self.clean.add((where, text))
            self._clean_chars += len(text)
            if len(self.clean) > self.cache_entries * 4 or self._clean_chars > self.max_cached_chars:
                self.clean.clear()  # rare: start over rather than keep an order of eviction
                self._clean_chars = 0
            return findings
        if self.min_cached <= len(text) <= self.max_cached_chars // 4:
            self._cache[cache_key] = findings
            self._cached_chars += len(text)
            while len(self._cache) > self.cache_entries or self._cached_chars > self.max_cached_chars:
                (_, _, old), _ = self._cache.popitem(last=False)
                self._cached_chars -= len(old)
        return findings
