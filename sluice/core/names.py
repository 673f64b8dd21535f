"""Comparing names that decide who someone is: user names, email addresses, group names.

They compare case-insensitively in ASCII only. Unicode case folding (`str.casefold`, and
`str.lower` for some letters) maps other letters onto ASCII ones: KELVIN SIGN to `k`, LONG S to
`s`, `ß` to `ss`, so `\u212aate@example.com`, an address someone else may be able to register,
would stand for `kate@example.com`, and a group named `\u017fluice-admins` for `sluice-admins`.
Letters beyond ASCII must match exactly.
"""

from __future__ import annotations

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(name: str) -> str:
    """`name` with ASCII letters lower-cased and everything else as it is."""
    return name.translate(_ASCII_LOWER)
