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
_COMPILED = tuple((kind, re.compile(rx), group, _NEEDS[kind]) for kind, rx, group in _KINDS)
_GENERIC = frozenset({"aws_secret_key", "url_password", "env_secret"})

_NOT_SECRET = re.compile(
    r"(?i)^(?:\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|<[^>]*>|\{\{.*\}\}|(?:your|my|the)[_\-].*|.*(?:example|changeme|placeholder|dummy|redacted|xxxx|\*\*\*\*).*"
    r"|true|false|null|none|undefined|[a-z_][a-z0-9_.]*\(.*|os\.environ.*|process\.env.*|env\..*|\[sluice:.*)$"
)
_PLACEHOLDER = re.compile(r"\[sluice:[a-z_]{1,32}:[0-9a-f]{12}\]")  # sluice.guardrails.vault's
ENTROPY_FLOOR = 3.0  # bits per character: random keys are > 4, words and identifiers mostly < 3


def entropy(value: str) -> float:
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _plausible(kind: str, value: str) -> bool:
    """The generic shapes only: a value that looks like a secret, not a reference to one."""
    if _NOT_SECRET.match(value):
        return False
    if kind == "env_secret":
        return entropy(value) >= ENTROPY_FLOOR and not value.isalpha() and any(c.isdigit() for c in value)
    if kind == "url_password":
        return entropy(value) >= 2.5
    return True


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each secret in `text`, the span covering only the secret value; a
    span found by a provider's format wins over a generic shape covering the same characters."""
    found: list[tuple[int, int, str]] = []
    lowered = lower(text)
    for kind, rx, group, needs in _COMPILED:
        if needs is not None and not any(n in (lowered if needs[1] else text) for n in needs[0]):
            continue
        for m in rx.finditer(text):
            if group and not _plausible(kind, m.group(group)):
                continue
            found.append((m.start(group), m.end(group), kind))
    if ("=" in text or ":" in text) and (
        len(lowered) != len(text) or any(name in lowered for name in _ENV_NAMES)  # _ENV needs a name
    ):
        rx = _ENV if len(lowered) == len(text) else _ENV_ANY_CASE  # a few letters lower to two
        for m in rx.finditer(lowered if rx is _ENV else text):
            start, end = m.span(1)
            if _plausible("env_secret", text[start:end]) and not any(s < end and start < e for s, e, _ in found):
                found.append((start, end, "env_secret"))
    if found and "[sluice:" in text:  # our own placeholders are not secrets
        held = [m.span() for m in _PLACEHOLDER.finditer(text)]
        found = [f for f in found if not any(s < f[1] and f[0] < e for s, e in held)]
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
