"""Secrets: the providers' own key formats, private keys, tokens and `.env`-shaped assignments,
found in ONE combined regular expression pass over a string.

Why not detect-secrets' plugins: they scan line by line with one expression per plugin and
took 1.3 s of CPU on a 136 KB request here (bench/guardrails.py measures both); this pass takes
about a millisecond. The formats are the providers' documented ones (a prefix and an alphabet),
so they are precise; the generic `KEY=value` shape is kept precise by an entropy floor and a list
of values that are obviously not secrets.
"""

from __future__ import annotations

import math
import re
import sys
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate

from sluice.guardrails.text import lower

# One expression per kind, each opening with a literal or a small class so the regex engine's
# prefix scan (C) skips most of the text; a single alternation of them all measured 60-130 ms on
# 140 KB because no branch could be skipped. `(kind, pattern, group of the value or 0)`.
_KINDS: tuple[tuple[str, str, int], ...] = (
    ("anthropic_key", r"sk-ant-[a-z]{2,6}\d{2}-[A-Za-z0-9_\-]{32,}", 0),
    ("openai_key", r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,}", 0),
    ("aws_access_key_id", r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Z0-9])", 0),
    # The secret half of an AWS pair has no prefix: it is found by the name it goes by.
    (
        "aws_secret_key",
        r"[Aa][Ww][Ss]_?[Ss][Ee][Cc][Rr][Ee][Tt][A-Za-z_]{0,12}[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
        1,
    ),
    ("github_token", r"gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255}", 0),
    ("google_api_key", r"AIza[0-9A-Za-z_\-]{35}", 0),
    (
        "slack_token",
        r"xox[abposr]-[A-Za-z0-9\-]{10,}|https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]{16,}",
        0,
    ),
    ("stripe_key", r"[sr]k_live_[A-Za-z0-9]{20,}", 0),
    (
        "private_key",
        # The whole block; or, cut short (a file read in part, a streamed answer's window), the header
        # and whatever base64 follows it.
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]{16,16384}?"
        r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s:\-]{0,16384})",
        0,
    ),
    ("jwt", r"eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{16,}", 0),
    # A password inside a connection URL: scheme://user:PASSWORD@host
    ("url_password", r"://[^\s:/@\"']{1,64}:([^\s@/\"']{6,128})@[\w.\-]+", 1),
)
# `.env` / shell / YAML shapes: NAME=value where NAME says it is secret; matched in the lowered
# text (a case-insensitive alternation is slow), the value then read from the original.
_ENV = re.compile(
    r"(?:key|secret|token|passw(?:or)?d|pwd|credentials?|auth)[a-z0-9_]*[ \t]*[=:][ \t]*[\"']?([^\s\"'#,;]{8,256})"
)
_ENV_ANY_CASE = re.compile(_ENV.pattern, re.IGNORECASE)
KINDS = (*(kind for kind, _, _ in _KINDS), "env_secret")
# What a string must contain for each kind to match at all (each implied by the kind's expression),
# looked for with `in` (C's fast search, several times quicker than the regex engine's scan for
# the expressions that open with a class or an alternation); None: always scanned. In the lowered
# text for the kinds matched by name in any case. `(needles, in_lowered)`: one of the needles.
_NEEDS: dict[str, tuple[tuple[str, ...], bool] | None] = {
    "anthropic_key": (("sk-ant-",), False),
    "openai_key": (("sk-",), False),
    "aws_access_key_id": None,
    "aws_secret_key": (("secret",), True),
    "github_token": None,
    "google_api_key": (("AIza",), False),
    "slack_token": (("xox", "hooks.slack.com/"), False),
    "stripe_key": (("k_live_",), False),
    "private_key": (("PRIVATE KEY",), False),
    "jwt": (("eyJ",), False),
    "url_password": (("://",), False),
}
_ENV_NAMES = ("key", "secret", "token", "passw", "pwd", "credential", "auth")  # _ENV's names, lowered
# A private key's expression, run as it is, reads up to 16 KB after every header for a footer (a
# lazy `[\s\S]{16,16384}?`): 1.6 s of CPU for 1 MB of headers with none. `_pem_matches` finds
# the same matches, each footer searched for once.
_PEM_RX = dict((kind, rx) for kind, rx, _ in _KINDS)["private_key"]
_PEM_HEAD = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PEM_FOOT = re.compile(r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_PEM_WHOLE = re.compile(_PEM_RX.split("|[A-Za-z0-9")[0] + ")")
_PEM_CUT = re.compile(_PEM_HEAD.pattern + r"[A-Za-z0-9+/=\s:\-]{0,16384}")
PEM_BODY = (16, 16384)  # the characters between a header and its footer, at least and at most


_NONE = sys.maxsize  # "no footer further on", past any header's reach


def _pem_matches(text: str) -> Iterator[re.Match[str]]:
    """What `re.compile(_PEM_RX).finditer(text)` yields: each header with the body and footer of
    the first footer 16 to 16384 characters after it, else with the base64 that follows it."""
    at, foot_at = 0, -1
    while (head := _PEM_HEAD.search(text, at)) is not None:
        lo, hi = head.end() + PEM_BODY[0], head.end() + PEM_BODY[1]
        m = None
        while True:
            if foot_at < lo:
                foot_at = text.find("-----END ", lo)  # the first one from `lo`: kept for the next header
                if foot_at < 0:
                    foot_at = _NONE  # none from `lo`, so none for any later header either
            if foot_at > hi:
                break
            foot = _PEM_FOOT.match(text, foot_at)
            if foot is not None:
                m = _PEM_WHOLE.match(text, head.start(), foot.end())
                break
            lo = foot_at + 1
        if m is None:
            m = _PEM_CUT.match(text, head.start())
        assert m is not None  # the header alone matches
        yield m
        at = m.end()


Finder = Callable[[str], Iterable[re.Match[str]]]
_COMPILED: tuple[tuple[str, Finder, int, tuple[tuple[str, ...], bool] | None], ...] = tuple(
    (kind, _pem_matches if kind == "private_key" else re.compile(rx).finditer, group, _NEEDS[kind])
    for kind, rx, group in _KINDS
)
_GENERIC = frozenset({"aws_secret_key", "url_password", "env_secret"})

# Values that name or stand for a secret rather than hold one: a whole-value shape, anchored (one
# start position, linear), or a word anywhere in it, looked for with `in` (an unanchored `.*word.*`
# inside the expression backtracked quadratically: 40 µs on a 256-character value, which a crafted
# body repeats by the ten thousand).
_NOT_SECRET = re.compile(
    r"(?i)^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|<[^>]*>|\{\{.*\}\}|(?:your|my|the)[_\-].*"
    r"|true|false|null|none|undefined|[a-z_][a-z0-9_.]*\(.*|os\.environ.*|process\.env.*|env\..*|\[sluice:.*)$"
)
_NOT_SECRET_WORDS = ("example", "changeme", "placeholder", "dummy", "redacted", "xxxx", "****")
_PLACEHOLDER = re.compile(r"\[sluice:[a-z_]{1,32}:[0-9a-f]{12}\]")  # sluice.guardrails.vault's
ENTROPY_FLOOR = 3.0  # bits per character: random keys are > 4, words and identifiers mostly < 3


def entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())  # Counter counts in C


def _plausible(kind: str, value: str) -> bool:
    """The generic shapes only: a value that looks like a secret, not a reference to one."""
    if _NOT_SECRET.match(value):
        return False
    lowered = value.lower()
    if any(word in lowered for word in _NOT_SECRET_WORDS):
        return False
    if kind == "env_secret":
        # The tests in C first: a value of letters only, or without a digit, is no secret of this kind.
        return not value.isalpha() and any(c.isdigit() for c in value) and entropy(value) >= ENTROPY_FLOOR
    if kind == "url_password":
        return entropy(value) >= 2.5
    return True


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each secret in `text`, the span covering only the secret value; a
    span found by a provider's format wins over a generic shape covering the same characters."""
    found = _find(text, lower(text), _COMPILED)
    return [(start, end, kind) for start, end, kind, _, _ in found] if found else []


# (value start, value end, kind, match start, match end): the match also covers the name a value
# goes by (`AWS_SECRET_ACCESS_KEY=`), which is what says whether it crosses from one string to the next.
_Found = tuple[int, int, str, int, int]


class _Taken:
    """Spans, for "does [start, end) overlap one of them" in log time: a crafted string holds tens
    of thousands of values, and testing each against all the others took 78 s for 1.1 MB."""

    __slots__ = ("ends", "starts")

    def __init__(self, spans: Iterable[tuple[int, int] | _Found]) -> None:
        ordered = sorted((s[0], s[1]) for s in spans)
        self.starts = [s for s, _ in ordered]
        self.ends = list(accumulate((e for _, e in ordered), max))  # the furthest end so far

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect_left(self.starts, end)  # the spans that start before `end`
        return i > 0 and self.ends[i - 1] > start


def _find(
    text: str,
    lowered: str,
    compiled: tuple[tuple[str, Finder, int, tuple[tuple[str, ...], bool] | None], ...],
    env: bool = True,
) -> list[_Found]:
    found: list[_Found] = []
    for kind, finditer, group, needs in compiled:
        if needs is not None and not any(n in (lowered if needs[1] else text) for n in needs[0]):
            continue
        for m in finditer(text):
            if group and not _plausible(kind, m.group(group)):
                continue
            found.append((m.start(group), m.end(group), kind, m.start(), m.end()))
    if (
        env
        and ("=" in text or ":" in text)
        and (
            len(lowered) != len(text) or any(name in lowered for name in _ENV_NAMES)  # _ENV needs a name
        )
    ):
        rx = _ENV if len(lowered) == len(text) else _ENV_ANY_CASE  # a few letters lower to two
        taken = _Taken(found)  # the kinds' values: a generic shape over one of them is not another
        for m in rx.finditer(lowered if rx is _ENV else text):
            start, end = m.span(1)
            if _plausible("env_secret", text[start:end]) and not taken.overlaps(start, end):
                found.append((start, end, "env_secret", m.start(), end))
    if found and "[sluice:" in text:  # our own placeholders are not secrets
        held = _Taken([(*m.span(),) for m in _PLACEHOLDER.finditer(text)])
        found = [f for f in found if not held.overlaps(f[0], f[1])]
    if len(found) > 1:
        found.sort()
        kept = [found[0]]
        for span in found[1:]:
            if span[0] < kept[-1][1]:  # overlapping: keep the specific kind
                if kept[-1][2] in _GENERIC and span[2] not in _GENERIC:
                    kept[-1] = span
                continue
            kept.append(span)
        found = kept
    return found


# Across strings. A request's content is many strings (text blocks, messages), scanned one by one;
# a secret split between two of them (`AWS_SECRET_ACCESS_KEY=` ending one text block, the value
# opening the next) is in neither whole. So each junction between two consecutive strings of one
# top-level field is scanned too, in a window: the last BACK characters before it (over up to LOOK
# strings, when they are short) and the first FRONT after it; when a match runs on to the window's
# end, the window grows forward to REACH characters. Only matches that cross a junction are new:
# the per-string scan finds the rest. Every kind has a literal to look for here (a window is short:
# a few `in` tests cost less than the two expressions without one).
BACK = 160
FRONT = 160
LOOK = 8
REACH = 20_000
# A match crossing a junction holds the characters on both sides of it. Every kind but a PEM block
# matches within one line (no newline inside), so only the line around the junction is scanned for
# them, and only when it holds one of their literals (one search, in the lowered line); the window
# is searched for `PRIVATE KEY` only. (The AWS secret's `\s*` around `=` could span a newline: a
# name and value split so across strings are not found.)
_LINE = tuple(c for c in _COMPILED if c[0] != "private_key")
_LINE_ANY = re.compile(
    "|".join(
        re.escape(n.lower())
        for n in (
            *(n for _, _, _, needs in _LINE if needs is not None for n in needs[0]),
            "akia", "asia", "abia", "acca", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", *_ENV_NAMES,
        )
    )
)  # fmt: skip
# A match crossing the junction starts before it, and each of these kinds' literals opens its match
# or sits a few characters into it (`hooks.slack.com/` 8, `aws_secret` 4): a literal that could
# belong to a crossing match starts before the junction plus 8.
_LINE_LEAD = 8
_LINE_REACH = _LINE_LEAD + max(len(n) for n in _LINE_ANY.pattern.replace("\\", "").split("|"))
_PEM = next(c for c in _COMPILED if c[0] == "private_key")
Part = tuple[int, int, int]  # (index of the string, start, end) of one part of a value
# A secret across strings: its kind, its value's parts (one per string it touches, in order), and
# the first and last string its whole match touches (the name it goes by may sit in an earlier one).
Across = tuple[str, list[Part], int, int]


# What the windows of one field may read in all, in characters: WINDOW_BUDGET times the field's
# own text, plus one window grown to REACH. A body crafted of many short strings, or of pieces that
# each run a match on to REACH, makes the windows read the same text over and over (5.6 MB of
# two-character strings took 1.6 s of CPU, 1.2 MB of `SECRET_KEY=…` pieces 0.8 s); past the budget
# the field is scanned once as a whole instead, which reads each character once whatever the shape.
WINDOW_BUDGET = 2


def find_across(texts: Sequence[str], junctions: Sequence[int], lo: int = 0, hi: int = -1) -> list[Across]:
    """The secrets that cross a junction of `texts[lo:hi]` (junction j: between texts[j - 1] and
    texts[j]), once each however many windows found them."""
    if hi < 0:
        hi = len(texts)
    budget = _Budget(texts, lo, hi)
    if len(junctions) > 64 and not budget.affords(len(junctions) * (BACK + FRONT)):
        return _across_whole(texts, lo, hi)  # the windows would read more than the field holds
    out: dict[tuple[str, tuple[Part, ...]], tuple[int, int]] = {}
    for j in junctions:
        found = _across(texts, j, lo, hi, budget)
        if found is None:
            return _across_whole(texts, lo, hi)
        for kind, parts, first, last in found:
            key = (kind, tuple(parts))
            was = out.get(key, (first, last))
            out[key] = (min(was[0], first), max(was[1], last))
    found = [(kind, list(parts), first, last) for (kind, parts), (first, last) in out.items()]
    return _outermost(found) if len(found) > 1 else found


def find_across_all(texts: Sequence[str], fields: Sequence[int], junctions: Sequence[int]) -> list[Across]:
    """find_across per field: `fields` are the indices where each top-level field's strings start
    (ascending), `junctions` ascending; a junction at a field's first string is no junction (two
    fields are never joined)."""
    found: list[Across] = []
    k, n = 0, len(junctions)
    for f, lo in enumerate(fields):
        hi = fields[f + 1] if f + 1 < len(fields) else len(texts)
        at = k
        while k < n and junctions[k] < hi:
            k += 1
        inner = [j for j in junctions[at:k] if j > lo]
        if inner:
            found += find_across(texts, inner, lo, hi)
    return found


def _outermost(found: list[Across]) -> list[Across]:
    """Drops each value found inside another one (found whole in one window, cut short in
    another), in one sweep: sorted by start, then longest first, a span that ends no later than
    one before it is inside it. Of two with the same span (two kinds), the first found is kept, in
    the order found. (A test
    of every pair was quadratic in the values a crafted body can make: 33 s for 1.2 MB.)"""
    spans = [((f[1][0][0], f[1][0][1]), (f[1][-1][0], f[1][-1][2]), n) for n, f in enumerate(found)]
    spans.sort(key=lambda s: (s[0], (-s[1][0], -s[1][1]), s[2]))
    kept: set[int] = set()
    reach = (-1, -1)
    for _, end, n in spans:
        if end > reach:
            kept.add(n)
            reach = end
    return [f for n, f in enumerate(found) if n in kept]


class _Budget:
    """The characters the windows of texts[lo:hi] may still read. The field's size is summed only
    once the windows read more than one grown window (a request's few new junctions never do)."""

    __slots__ = ("hi", "left", "lo", "sized", "texts")

    def __init__(self, texts: Sequence[str], lo: int, hi: int) -> None:
        self.texts, self.lo, self.hi = texts, lo, hi
        self.left, self.sized = REACH + BACK, False

    def affords(self, n: int) -> bool:
        if n > self.left and not self.sized:
            self.sized = True
            self.left += WINDOW_BUDGET * sum(map(len, self.texts[self.lo : self.hi]))
        return n <= self.left

    def spend(self, n: int) -> bool:
        ok = self.affords(n)
        self.left -= n
        return ok


def _across_whole(texts: Sequence[str], lo: int, hi: int) -> list[Across]:
    """find_across over the whole field at once: every kind over the strings joined, the matches
    that cross from one string to the next kept."""
    edges = list(accumulate((len(t) for t in texts[lo:hi]), initial=0))  # where each string starts
    joined = "".join(texts[lo:hi])
    out: list[Across] = []
    # (Not `lower()`: its one-string cache would keep the joined field alive after the request.)
    for start, end, kind, m_start, m_end in _find(joined, joined.lower(), _COMPILED):
        first = bisect_right(edges, m_start) - 1  # the string the match opens in
        if m_end <= edges[first + 1]:
            continue  # within one string: the per-string scan has it
        parts: list[Part] = []
        touched: list[int] = []
        for k in range(first, bisect_left(edges, m_end)):
            at, next_at = edges[k], edges[k + 1]
            if max(start, at) < min(end, next_at):
                parts.append((lo + k, max(start, at) - at, min(end, next_at) - at))
            if next_at > at:  # an empty string is touched by nothing
                touched.append(lo + k)
        out.append((kind, parts, touched[0], touched[-1]))
    return out


def _across(texts: Sequence[str], j: int, lo: int, hi: int, budget: _Budget) -> list[Across] | None:
    """The secrets crossing junction j, read in a window around it; None once the field's window
    budget is spent."""
    front = FRONT
    while True:
        pieces: list[tuple[int, int, int]] = []  # (index, offset in the string, length)
        i, need = j - 1, BACK
        while i >= lo and need > 0 and j - i <= LOOK:
            size = len(texts[i])
            take = min(size, need)
            pieces.append((i, size - take, take))
            need -= take
            i -= 1
        pieces.reverse()
        junction = BACK - need  # where the junction is in the window
        i, need, limit = j, front, LOOK if front == FRONT else LOOK * 8
        while i < hi and need > 0 and i - j < limit:
            take = min(len(texts[i]), need)
            pieces.append((i, 0, take))
            need -= take
            i += 1
        last = pieces[-1]
        more = i < hi or last[2] < len(texts[last[0]])  # text after the window's end
        window = "".join(texts[i][at : at + n] for i, at, n in pieces)
        if not budget.spend(len(window)):
            return None
        if not 0 < junction < len(window):
            return []  # nothing on one side
        found: list[_Found] = []
        a = window.rfind("\n", 0, junction) + 1
        b = window.find("\n", junction)
        if b < 0:
            b = len(window)
        literal = _LINE_ANY.search(window[a : junction + _LINE_REACH].lower()) if a < junction < b else None
        if literal is not None and literal.start() < junction - a + _LINE_LEAD:  # the leftmost one
            line = window[a:b]
            found = [(s + a, e + a, k, ms + a, me + a) for s, e, k, ms, me in _find(line, line.lower(), _LINE)]
        if "PRIVATE KEY" in window:
            found += _find(window, window, (_PEM,), env=False)
        if not found:
            return []
        edges, at = [], 0  # where each piece starts in the window
        for _, _, n in pieces:
            edges.append(at)
            at += n
        crossing = [f for f in found if any(f[3] < e < f[4] for e in edges)]
        if more and front < REACH and any(f[4] == len(window) for f in crossing):
            front = REACH  # a match runs on to the window's end: read on
            continue
        out: list[Across] = []
        for start, end, kind, m_start, m_end in crossing:
            parts = []
            touched = []
            for (i, offset, n), at in zip(pieces, edges, strict=True):
                a, b = max(start, at), min(end, at + n)
                if a < b:
                    parts.append((i, offset + a - at, offset + b - at))
                if max(m_start, at) < min(m_end, at + n):
                    touched.append(i)
            out.append((kind, parts, touched[0], touched[-1]))
        return out
