"""Prompt injection in tool results and fetched content: a rule set of known phrasings, hidden
instructions (HTML comments that address the model, zero-width and bidirectional-control
characters, Unicode tag characters), and instructions to exfiltrate data or to call tools.

No classifier ships inside a package here (each needs a model download), so this is rules only,
audit by default: a phrase list has false positives (a README about prompt injection quotes them).
"""

from __future__ import annotations

import re

from sluice.guardrails.text import lower

# Matched in the lowered text (a case-insensitive alternation is much slower in `re`), and one
# expression per opening word: an expression that opens with a literal is found by the engine's
# prefix search in C (about 0.1 ms per 140 KB), an alternation of groups is tried at every position
# (3-5 ms).
_PHRASES = tuple(
    re.compile(p)
    for p in (
        r"ignore (?:all |any |the )*(?:previous|prior|above|earlier|preceding) "
        r"(?:instructions|prompts?|rules|directions)",
        r"disregard (?:all |any |the |your )*(?:previous|prior|above|system) (?:instructions|prompts?|rules)",
        r"forget (?:all |everything |your )+(?:instructions|you were told|above)",
        r"you are now (?:in )?(?:dan\b|developer mode|jailbroken|an? unrestricted)",
        r"new (?:system )?instructions ?:",
        r"do not (?:tell|inform|mention (?:this )?to) the user",
        r"system prompt",
        r"hidden instructions",
        r"<\s*/?\s*(?:system|im_start|instructions?)\s*>",
        r"\[/?inst\]",
    )
)
_LEADS = ("system prompt", "hidden instructions")  # alone they are only phrases when a verb asks for them
_ASK = re.compile(r"(?:reveal|print|output|repeat|show) (?:me )?(?:your|the) $")
_EXFIL_TAIL = (
    r" (?:the |all |any |your |these |contents? of |my )*"
    r"(?:secrets?|credentials?|api keys?|tokens?|passwords?|env(?:ironment)? (?:variables|file)|\.env"
    r"|ssh keys?|conversation|files?)"
    r"[^.\n]{0,80}?(?:to|at) (?:https?://|[a-z0-9.\-]+\.[a-z]{2,})"
)
_EXFIL = (
    *(
        re.compile(verb + _EXFIL_TAIL)
        for verb in ("send", "post", "upload", "exfiltrate", "transmit", "forward", "leak")
    ),
    re.compile(r"curl [^\n|]{0,200}\|\s*(?:ba|z)?sh\b"),
    re.compile(r"the [a-z0-9_\-]+ tool (?:to|and|with)"),  # "call/use/invoke/run the X tool to ..."
)
_TOOL_VERB = re.compile(r"(?:call|use|invoke|run) $")
COMMENT_REACH = 4000  # an HTML comment's text, at most, for it to be read as one
_ADDRESSED = re.compile(r"\b(?:ignore|instructions?|assistant|ai|llm|model|you must|system|tool|execute|run)\b")
# Zero-width, bidirectional controls, word joiners, BOM; Unicode tags hide ASCII in plain sight.
_HIDDEN = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]+")
KINDS = ("injection_phrase", "exfiltration", "hidden_comment", "hidden_characters")


def find_injection(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    lowered = lower(text)
    if len(lowered) != len(text):  # a few letters lower to two; keep the spans of `text`
        lowered = text
    for rx in _PHRASES:
        for m in rx.finditer(lowered):
            if rx.pattern in _LEADS and not _ASK.search(lowered, max(0, m.start() - 20), m.start()):
                continue
            found.append((m.start(), m.end(), "injection_phrase"))
    for rx in _EXFIL:
        for m in rx.finditer(lowered):
            start = m.start()
            if rx is _EXFIL[-1]:
                verb = _TOOL_VERB.search(lowered, max(0, start - 8), start)
                if verb is None:
                    continue
                start = verb.start()
            found.append((start, m.end(), "exfiltration"))
    if "<!--" in text:
        for start, end in _comments(lowered):
            if _ADDRESSED.search(lowered, start + 4, end - 3):
                found.append((start, end, "hidden_comment"))
    if not text.isascii():
        found.extend((m.start(), m.end(), "hidden_characters") for m in _HIDDEN.finditer(text))
    return found


def _comments(text: str) -> list[tuple[int, int]]:
    r"""The spans of `<!--` … `-->` with at most COMMENT_REACH characters between, each opening at
    the first `<!--` after the last one's close. (The expression `<!--([\s\S]{0,4000}?)-->` read up
    to 4000 characters after every `<!--` with no close near it: 15 s of CPU for a 1 MB tool
    result of `<!--` repeated. Each close is searched for once here.)"""
    out: list[tuple[int, int]] = []
    close = -1
    at = text.find("<!--")
    while at >= 0:
        if close < at + 4:
            close = text.find("-->", at + 4)
            if close < 0:
                break  # no close after this one, so none after any later one
        if close - (at + 4) <= COMMENT_REACH:
            out.append((at, close + 3))
            at = text.find("<!--", close + 3)
        else:
            at = text.find("<!--", at + 1)
    return out
