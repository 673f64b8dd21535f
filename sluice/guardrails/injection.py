"""Prompt injection in tool results and fetched content: a rule set of known phrasings, hidden
instructions (HTML comments that address the model, zero-width and bidirectional-control
characters, Unicode tag characters), and instructions to exfiltrate data or to call tools.

No classifier ships inside a package here (each needs a model download), so this is rules only,
audit by default: a phrase list has false positives (a README about prompt injection quotes them).
"""

from __future__ import annotations

import re

# Matched in the lowered text: a case-insensitive alternation is much slower in `re`.
_PHRASES = re.compile(
    r"ignore (?:all |any |the )*(?:previous|prior|above|earlier|preceding) (?:instructions|prompts?|rules|directions)"
    r"|disregard (?:all |any |the |your )*(?:previous|prior|above|system) (?:instructions|prompts?|rules)"
    r"|forget (?:all |everything |your )+(?:instructions|you were told|above)"
    r"|you are now (?:in )?(?:dan|developer mode|jailbroken|an? unrestricted)"
    r"|new (?:system )?instructions ?:"
    r"|do not (?:tell|inform|mention (?:this )?to) the user"
    r"|(?:reveal|print|output|repeat) (?:your|the) (?:system prompt|hidden instructions|initial instructions)"
    r"|<\s*/?\s*(?:system|im_start|instructions?)\s*>"
    r"|\[/?inst\]"
)
_EXFIL = re.compile(
    r"(?:send|post|upload|exfiltrate|transmit|forward|leak) (?:the |all |any |your |these )*"
    r"(?:secrets?|credentials?|api keys?|tokens?|passwords?|env(?:ironment)? (?:variables|file)|\.env"
    r"|ssh keys?|conversation|files?)"
    r"[^.\n]{0,80}?(?:to|at) (?:https?://|[a-z0-9.\-]+\.[a-z]{2,})"
    r"|curl [^\n|]{0,200}\|\s*(?:ba|z)?sh\b"
    r"|(?:call|use|invoke|run) the [a-z0-9_\-]+ tool (?:to|and|with)"
)
_COMMENT = re.compile(r"<!--([\s\S]{0,4000}?)-->")
_ADDRESSED = re.compile(r"\b(?:ignore|instructions?|assistant|ai|llm|model|you must|system|tool|execute|run)\b")
# Zero-width, bidirectional controls, word joiners, BOM; Unicode tags hide ASCII in plain sight.
_HIDDEN = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]+")
KINDS = ("injection_phrase", "exfiltration", "hidden_comment", "hidden_characters")


def find_injection(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    lowered = text.lower()
    if len(lowered) != len(text):  # a few letters lower to two; keep the spans of `text`
        lowered = text
    found.extend((m.start(), m.end(), "injection_phrase") for m in _PHRASES.finditer(lowered))
    found.extend((m.start(), m.end(), "exfiltration") for m in _EXFIL.finditer(lowered))
    if "<!--" in text:
        for m in _COMMENT.finditer(lowered):
            if _ADDRESSED.search(m.group(1)):
                found.append((m.start(), m.end(), "hidden_comment"))
    if not text.isascii():
        found.extend((m.start(), m.end(), "hidden_characters") for m in _HIDDEN.finditer(text))
    return found
