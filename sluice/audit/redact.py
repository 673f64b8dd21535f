"""Known secret shapes, removed from any content before it is stored in the audit log."""

from __future__ import annotations

import re

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("anthropic_key", re.compile(r"sk-ant-[A-Za-z0-9_\-]{10,}")),
    ("sluice_key", re.compile(r"sk-sluice-[A-Za-z0-9_\-]{8,}")),
    ("openai_key", re.compile(r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}")),
    ("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b")),
    ("slack_token", re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}\b")),
    ("google_api_key", re.compile(r"\bAIza[0-9A-Za-z\-_]{35}\b")),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\b")),
    ("bearer_token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-]{16,}")),
    (
        "assigned_secret",
        re.compile(
            r"(?i)(?<![A-Za-z])(password|passwd|secret|api[_-]?key|access[_-]?token|auth[_-]?token)(\s*[:=]\s*)([\"']?)[^\s\"',;]{6,}\3"
        ),
    ),
]


_KEY_HEAD = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_KEY_FOOT = re.compile(r"-----END [A-Z ]*PRIVATE KEY-----")


def _private_keys(text: str) -> str:
    """What `re.sub(HEAD + ".*?" + FOOT, ..., flags=re.S)` gives, reading the text once: that
    expression searched the rest of the text for a footer from every header, 0.68 s of CPU for
    64 KB of repeated headers (the content an audit record captures). A header with no footer
    after it means no later header has one either."""
    out: list[str] = []
    at = 0
    while (head := _KEY_HEAD.search(text, at)) is not None:
        foot = _KEY_FOOT.search(text, head.end())
        if foot is None:
            break
        out += (text[at : head.start()], "[REDACTED:private_key]")
        at = foot.end()
    return "".join(out) + text[at:] if out else text


def redact(text: str) -> str:
    text = _private_keys(text)
    for kind, pattern in _PATTERNS:
        if kind == "assigned_secret":
            text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED:secret]", text)
        else:
            text = pattern.sub(f"[REDACTED:{kind}]", text)
    return text
