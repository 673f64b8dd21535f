"""Redact with restore: a stable placeholder per secret and session, and the way back.

A placeholder is `[sluice:<kind>:<12 hex>]`, the hex a keyed hash of the session and the value:
the same secret gets the same placeholder within a session (the provider's prompt cache keeps
working, the model can refer to it), another session gets another one. Placeholders are made of
characters JSON and shells leave alone, so the model writes them back verbatim. The value is
kept only in memory, in a bounded map per session, and is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict

PLACEHOLDER = re.compile(r"\[sluice:[a-z_]{1,32}:[0-9a-f]{12}\]")
PREFIX = "[sluice:"
LONGEST = len("[sluice:") + 32 + 1 + 12 + 1  # the look-behind a streamed restore needs


class Vault:
    """Placeholders -> values of one session."""

    __slots__ = ("_key", "_session", "values")

    def __init__(self, key: bytes, session: str, values: dict[str, str]) -> None:
        self._key, self._session, self.values = key, session.encode(), values

    def placeholder(self, kind: str, value: str) -> str:
        mac = hmac.new(self._key, self._session + b"\0" + value.encode("utf-8", "surrogatepass"), hashlib.sha256)
        name = f"[sluice:{kind}:{mac.hexdigest()[:12]}]"
        self.values[name] = value
        return name

    def restore(self, text: str) -> str:
        if PREFIX not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self.values.get(m.group(), m.group()), text)


class Vaults:
    """The sessions' vaults, bounded (the oldest session goes first)."""

    def __init__(self, key: bytes, sessions: int = 10_000, per_session: int = 1_000) -> None:
        self._key, self._max, self._per = key, sessions, per_session
        self._sessions: OrderedDict[str, dict[str, str]] = OrderedDict()

    def rekey(self, key: bytes) -> None:
        """Placeholders made from now on are keyed with `key`; the ones made before still restore."""
        self._key = key

    def of(self, session: str) -> Vault:
        values = self._sessions.get(session)
        if values is None:
            values = self._sessions[session] = {}
            if len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(session)
            while len(values) > self._per:
                values.pop(next(iter(values)))
        return Vault(self._key, session, values)


class StreamRestorer:
    """Restores placeholders in string fragments that arrive split anywhere (streamed tool-call
    arguments): the tail of a fragment that may open a placeholder is held back, at most LONGEST
    characters, and put in front of the next fragment of the same string."""

    __slots__ = ("_held", "_vault")

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._held: dict[object, str] = {}

    def feed(self, where: object, fragment: str) -> str:
        held = self._held.pop(where, "")
        text = held + fragment if held else fragment
        if "[" not in text:
            return text
        cut = text.rfind("[", max(0, len(text) - LONGEST))
        if cut >= 0:
            tail = text[cut:]
            if PLACEHOLDER.match(tail) is None and _opens_placeholder(tail):
                self._held[where] = tail
                text = text[:cut]
        return self._vault.restore(text)

    @property
    def holding(self) -> bool:
        return bool(self._held)

    def flush(self) -> dict[object, str]:
        held, self._held = self._held, {}
        return held


_OPENING = re.compile(r"\[(?:s(?:l(?:u(?:i(?:c(?:e(?::(?:[a-z_]{1,32}(?::[0-9a-f]{0,12})?)?)?)?)?)?)?)?)?$")


def _opens_placeholder(tail: str) -> bool:
    return _OPENING.match(tail) is not None
