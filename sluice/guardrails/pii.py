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
_CARD = re.compile(r"(?<![\d.\-])[2-6]\d{3}(?:[ \-]?\d{4}){2}[ \-]?\d{1,7}(?![\d.])")
_SSN = re.compile(r"(?<![\d\-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d\-])")
_NINO = re.compile(r"(?<![A-Z0-9])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Z0-9])")
_IBAN = re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Z0-9])")
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
    for m in _CARD.finditer(text):
        number = m.group().replace(" ", "").replace("-", "")
        if 13 <= len(number) <= 19 and luhn(number):
            found.append((m.start(), m.end(), "card_number"))
    found.extend((m.start(), m.end(), "us_ssn") for m in _SSN.finditer(text))
    found.extend((m.start(), m.end(), "uk_nino") for m in _NINO.finditer(text))
    found.extend((m.start(), m.end(), "iban") for m in _IBAN.finditer(text) if iban_ok(m.group()))
    return found
