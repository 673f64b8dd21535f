"""Regular expressions an operator writes (guardrail `regex` rules), run in time linear in the text.

Python's `re` (and the `regex` module) backtrack: `(\\w+\\s?)+$`, a pattern an operator can write by
mistake, takes 2.9 s on 25 characters of a caller's body, and a caller chooses the body. RE2 runs
every pattern in time linear in the text (40 µs on 105 KB for that one) by refusing what needs
backtracking: lookaround and backreferences are refused when the config is loaded, never at request
time. Its `\\d`, `\\w`, `\\b` and `\\s` are ASCII ones (Python's are Unicode ones on `str`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Protocol

import re2


class Span(Protocol):
    def start(self) -> int: ...
    def end(self) -> int: ...


class Finder(Protocol):
    """What a rule searches with: a `LinearPattern`, or an `re.Pattern` the gateway built itself."""

    def finditer(self, text: str, /) -> Iterator[Span]: ...


# A lone surrogate (JSON allows `"\ud800"`) has no UTF-8 form, so RE2 (which reads UTF-8) cannot
# be handed it; U+FFFD is one character too, so the offsets of what is found stay those of the text.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 would print the refused pattern to stderr
    return options


_OPTIONS = _options()


class LinearPattern:
    """A compiled pattern with `re.Pattern`'s `finditer` (character offsets of a `str`)."""

    __slots__ = ("_rx", "pattern")

    def __init__(self, pattern: str) -> None:
        """Raises ValueError, saying why, for a pattern RE2 does not take."""
        try:
            self._rx = re2.compile(pattern, _OPTIONS)
        except re2.error as exc:
            why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
            raise ValueError(f"{why} (RE2 syntax: no lookaround or backreferences)") from None
        self.pattern = pattern

    @classmethod
    def any_of(cls, patterns: Iterable[str]) -> LinearPattern:
        """One pattern that matches where any of `patterns` does."""
        return cls("|".join(f"(?:{p})" for p in patterns))

    def finditer(self, text: str) -> Iterator[Span]:
        try:
            return iter(list(self._rx.finditer(text)))
        except UnicodeEncodeError:
            return iter(list(self._rx.finditer(_SURROGATE.sub("\ufffd", text))))
