"""Personal data: emails, phone numbers, payment card numbers (Luhn-checked), national ids
(US SSN, UK National Insurance number, IBAN with its mod-97 check).

Presidio's analyzer needs a spaCy language model, which is a download at run time (none ships in a
package here), so these are our own pattern recognisers, with the same check digits Presidio uses.
Each expression opens with a literal or a class so the regex engine's prefix scan stays in C.
"""

from __future__ import annotations

import re

# The domain part after "@" is matched forward; the local part is found by scanning back.
_EMAIL = re.compile(r"@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.)+[A-Za-z]{2,24}\b")
_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}$")
_PHONE = re.compile(r"\+[1-9]\d{0,2}[ .\-]?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]?\d{2,4}){1,4}(?!\d)")
_PHONE_US = re.compile(r"\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}(?!\d)")
# Card numbers, SSNs, and the digits of NI numbers and IBANs are all found from ONE scan for runs of
# digits (a pattern that opens with a lookbehind or a letter class is 3-5 ms per 140 KB in `re`; the
# one run scan is about 1.5 ms), then told apart by shape and check digits.
_RUN = re.compile(r"[0-9][0-9 \-]{4,26}[0-9]")
_SSN = re.compile(r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}")
_NINO_HEAD = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?$")
_NINO_DIGITS = re.compile(r"\d{2} ?\d{2} ?\d{2}")
_IBAN_HEAD = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){0,6} ?[A-Z0-9]{0,3}$")
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Z0-9])")
KINDS = ("email", "phone", "card_number", "us_ssn", "uk_nino", "iban")


def luhn(digits: str) -> bool:
    total, odd = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if odd:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        odd = not odd
    return total % 10 == 0


def iban_ok(value: str) -> bool:
    s = value.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def find_pii(text: str) -> list[tuple[int, int, str]]:
    found: list[tuple[int, int, str]] = []
    if "@" in text:
        for m in _EMAIL.finditer(text):
            local = _LOCAL.search(text, max(0, m.start() - 64), m.start())
            if local is not None and local.group()[0] not in ".-":
                found.append((local.start(), m.end(), "email"))
    for rx in (_PHONE, _PHONE_US):
        for m in rx.finditer(text):
            digits = sum(c.isdigit() for c in m.group())
            if 8 <= digits <= 15:
                found.append((m.start(), m.end(), "phone"))
    iban_until = -1
    for m in _RUN.finditer(text):
        start, end = m.span()
        before = text[start - 1] if start else " "
        if before.isdigit() or before in ".-_" or (before.isalpha() and not before.isupper()):
            continue
        run = m.group()
        after = text[end] if end < len(text) else " "
        number = run.replace(" ", "").replace("-", "")
        if after in "._" or (after.isalnum() and not after.isupper()):
            pass  # part of a longer token (a version, an identifier): only an IBAN may end so
        elif 13 <= len(number) <= 19 and run[0] in "23456" and luhn(number) and not before.isupper():
            found.append((start, end, "card_number"))
        elif len(run) == 11 and _SSN.fullmatch(run) and not before.isupper():
            found.append((start, end, "us_ssn"))
        elif _NINO_DIGITS.fullmatch(run) and (head := _NINO_HEAD.search(text, max(0, start - 3), start)):
            tail = text[end : end + 2].lstrip(" ")
            if tail[:1] in ("A", "B", "C", "D") and not tail[1:2].isalnum():
                found.append((head.start(), end + (2 if text[end : end + 1] == " " else 1), "uk_nino"))
        if start > iban_until and (before.isupper() or before == " "):
            pair = text[start - 2 : start]
            cand = start - 2 if start >= 2 and pair.isalpha() and pair.isupper() else None
            if cand is None and before == " " and (head := _IBAN_HEAD.search(text, max(0, start - 40), start)):
                cand = head.start()
            iban = _IBAN.match(text, cand) if cand is not None else None
            if iban is not None and iban_ok(iban.group()):
                found.append((iban.start(), iban.end(), "iban"))
                iban_until = iban.end()
    return found
