"""Text helpers the detectors share."""

from __future__ import annotations

_last: tuple[str, str] = ("", "")


def lower(text: str) -> str:
    """`text.lower()`, computed once for the detectors that look at one string in turn (secrets'
    names and injection phrases are matched in the lowered text): the last result is kept, for
    the same string object only."""
    global _last
    if _last[0] is text:
        return _last[1]
    lowered = text.lower()
    _last = (text, lowered)
    return lowered


def forget() -> None:
    """Drops the kept string (the scan of a string is over: nothing it held stays in memory)."""
    global _last
    _last = ("", "")
