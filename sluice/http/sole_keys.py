"""One value per governed top-level field: a body that names one twice is re-encoded from what the
gateway parsed (the last of each, as orjson reads it), so a provider whose parser keeps the first
cannot run another model, limit or stream than the one that was allowed, priced and reserved, nor
read a conversation other than the one the guardrails scanned.

The governed fields are per wire format (`WireRecord.governed`): each format's own content and priced
fields, but not a name its bodies nest as a key all the time (Anthropic's `tool_use.input`), which
would send every agent's body to the slow path below."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from sluice.core.types import WireFormat
from sluice.formats.json_body import encode_body
from sluice.formats.registry import record_of

_WS = b" \t\n\r"  # JSON's whitespace
# A JSON key may spell a letter or '_' as \u00XX (`"\u006dodel"` is `model`); no encoder in use
# writes ASCII letters that way, so only a body with one is searched for keys spelled with escapes.
_ESCAPED_LETTER = re.compile(rb"\\u00[4-7][0-9A-Fa-f]")
_ESCAPED_KEY = re.compile(rb'("[A-Za-z_]*\\u00[4-7][0-9A-Fa-f](?:[A-Za-z_]|\\u00[0-9A-Fa-f]{2})*")[ \t\n\r]*:')
# The first byte of a JSON value of each type orjson reads.
_FIRST_BYTES: dict[type, bytes] = {
    str: b'"',
    dict: b"{",
    list: b"[",
    bool: b"tf",
    type(None): b"n",
    int: b"-0123456789",
    float: b"-0123456789",
}
_MAX_SPOTS = 64  # past this many governed keys (nested, all of them), the body is parsed once more instead
_MAX_TESTS = 8  # likewise past this many prefix parses


@dataclass(frozen=True, slots=True)
class Governed:
    """The governed names of one wire format, and the regex that finds them spelled plainly as keys.
    A quote inside a JSON string is escaped, so a match is a key, or (when its first quote is an
    escaped one) the tail of a longer key, which the check of the byte before it (`{` or `,`) drops."""

    names: frozenset[str]
    plain_key: re.Pattern[bytes]

    @classmethod
    def of(cls, names: frozenset[str]) -> Governed:
        return cls(names, re.compile(rb'"(' + _trie(sorted(k.encode() for k in names)) + rb')"[ \t\n\r]*:'))


def _trie(words: list[bytes]) -> bytes:
    """The alternation of `words` as a prefix tree (`m(?:odel|ax_tokens)`): at each quote of the body
    the regex then tests one branch per letter, not one per name (a plain `model|max_tokens|...`
    scans a third slower on Claude Code's body with Anthropic's 15 names)."""
    branches: dict[int, list[bytes]] = {}
    for word in words:
        if word:
            branches.setdefault(word[0], []).append(word[1:])
    ends = b"" in words
    parts = [re.escape(bytes([c])) + _trie(rest) for c, rest in sorted(branches.items())]
    if not parts:
        return b""
    if len(parts) == 1 and not ends:
        return parts[0]
    return b"(?:" + b"|".join(parts) + b")" + (b"?" if ends else b"")


GOVERNED_BY_WIRE: dict[WireFormat, Governed] = {w: Governed.of(record_of(w).governed) for w in WireFormat}
# A caller that names no format (tests, tools): every format's governed names at once.
_ALL = Governed.of(frozenset().union(*(g.names for g in GOVERNED_BY_WIRE.values())))


def sole_keys(body: bytes, doc: dict[str, Any], wire: WireFormat | None = None) -> bytes:
    """`body`, or `doc` re-encoded when a governed top-level key of `wire` occurs twice in it (in any
    spelling). Each governed key in the body is found by a regex (one pass, plus one for escaped
    spellings when the body has an escaped ASCII letter); a name the body repeats counts only when
    it is a top-level key of `doc` (a repeated top-level key is one there, whichever value won),
    and which of its keys are top-level is decided exactly, mostly without parsing (see
    `_repeats_at_top`)."""
    governed = _ALL if wire is None else GOVERNED_BY_WIRE[wire]
    backslash_u = body.find(b"\\u00")  # bytes.find is about twice as quick as the regex's own scan
    escaped = None if backslash_u < 0 else _ESCAPED_LETTER.search(body, backslash_u)
    wanted: set[bytes] | None = None  # the names to look into (None: all of them)
    if escaped is None:
        names = governed.plain_key.findall(body)
        if len(names) == len(unique := set(names)):  # each governed name once at most (the usual body)
            return body
        wanted = {n for n in unique if n.decode() in doc and names.count(n) > 1}
        if not wanted:  # repeated only nested, under a name that is no top-level key
            return body
    spots: dict[str, list[tuple[int, int]]] = {}  # name -> (opening quote, value) of each key spelling it
    count = 0
    if wanted is None:
        for match in governed.plain_key.finditer(body):
            count += _spot(spots, body, match.group(1).decode(), match.start(), match.end())
    else:  # the few names repeated: found with bytes.find, quicker than the regex's scan
        for key in wanted:
            quoted, at = b'"' + key + b'"', -1
            while (at := body.find(quoted, at + 1)) >= 0:
                end = at + len(quoted)
                while end < len(body) and body[end] in _WS:
                    end += 1
                if end < len(body) and body[end] == 0x3A:  # `:`, as the regex requires
                    count += _spot(spots, body, key.decode(), at, end + 1)
    if escaped is not None:
        for match in _ESCAPED_KEY.finditer(body, max(0, body.rfind(b'"', 0, escaped.start()))):
            name = orjson.loads(match.group(1))
            if name in governed.names:
                count += _spot(spots, body, name, match.start(), match.end())
        for found in spots.values():
            found.sort()
    if count > _MAX_SPOTS:
        return encode_body(doc) if _repeats_by_reparse(body, governed.names) else body
    first = len(body) - len(body.lstrip(_WS))  # the top-level object's `{`
    tests = [0]
    for name, found in spots.items():
        if len(found) > 1 and name in doc:
            repeated = _repeats_at_top(body, first, doc[name], found, tests)
            if repeated is None:
                return encode_body(doc) if _repeats_by_reparse(body, governed.names) else body
            if repeated:
                return encode_body(doc)
    return body


def _spot(spots: dict[str, list[tuple[int, int]]], body: bytes, name: str, start: int, value: int) -> int:
    """Note the key at `start` if it is one: the byte before its quote is `{` or `,`."""
    before = start - 1
    while before >= 0 and body[before] in _WS:
        before -= 1
    if before < 0 or body[before] not in b"{,":
        return 0
    while body[value] in _WS:
        value += 1
    spots.setdefault(name, []).append((start, value))
    return 1


def _repeats_at_top(body: bytes, first: int, last: Any, found: list[tuple[int, int]], tests: list[int]) -> bool | None:
    """Whether two of the keys at `found` (in body order, all spelling one name) belong to the
    top-level object; None when deciding would take too many parses.

    orjson keeps the last of a repeated key, so the last top-level one holds `last`'s value: a key
    whose value starts with a byte no value of that type can is nested, if it is the last one
    found (by induction, each as the ones after it are dropped). Of the rest, a key right after the
    body's first `{` is its first member; one after `,` is a top-level member exactly when the
    members before it close into a valid object (`body[:comma] + "}"`), or equally when
    `"{" + body[key:]` is one: a nested key leaves an open bracket in the first and one too many
    closed in the second (the shorter of the two is parsed)."""
    starts = _FIRST_BYTES.get(type(last))
    found = list(found)
    if starts is not None:
        while found and body[found[-1][1]] not in starts:
            found.pop()
    at_top = 0
    for start, _ in found:
        before = start - 1
        while body[before] in _WS:
            before -= 1
        if body[before] == 0x7B:  # `{`
            at_top += before == first
        else:
            if tests[0] >= _MAX_TESTS:
                return None
            tests[0] += 1
            members = body[:before] + b"}" if before <= len(body) - start else b"{" + body[start:]
            try:
                orjson.loads(members)
            except orjson.JSONDecodeError:
                continue
            at_top += 1
        if at_top > 1:
            return True
    return False


def _repeats_by_reparse(body: bytes, governed: frozenset[str]) -> bool:
    """Whether a governed top-level key repeats, by parsing the body again with a hook that sees the
    pairs of each object (the stdlib parser; orjson keeps only the last of a repeated key)."""
    top: list[list[tuple[str, Any]]] = []

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        top[:] = [pairs]  # the outermost object is the last one the parser closes
        return dict(pairs)

    try:
        json.loads(body, object_pairs_hook=keep_pairs)
    except (ValueError, RecursionError):  # stdlib's limits differ from orjson's: re-encode to be sure
        return True
    keys = [k for k, _ in top[0] if k in governed] if top else []
    return len(keys) != len(set(keys))
