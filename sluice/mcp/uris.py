"""Resource URIs as grants see them (pure): one spelling per resource, so a grant for a folder
never reaches outside it.

`normalise` follows RFC 3986 section 6.2.2: the scheme (and the host of an authority, both
case-insensitive) in lower case, percent-encodings of unreserved characters decoded and the others
in upper case, dot segments removed (section 5.2.4). It also decodes encoded `/` and `.` before
removing dot segments, since servers that map URIs to files decode them, so `%2e%2e%2f` climbs
like `../`. A URI that cannot be made safe is refused (None): no scheme, control characters
(NUL included), backslashes (a path separator on some servers) raw or encoded, malformed
escapes, and encoded escapes of `.`, `/`, `\\` or NUL (`%252e`, for servers that decode twice).
Grants are matched on the normalised URI, and the normalised URI is what goes upstream.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DECODED = _UNRESERVED | {"/"}
_SMUGGLED = re.compile(r"%25(?:2e|2f|5c|00)", re.IGNORECASE)


def normalise(uri: str) -> str | None:
    """The URI in its one normal form, or None when it is refused."""
    if any(ord(c) < 0x20 or c in "\x7f\\" for c in uri) or _SMUGGLED.search(uri):
        return None
    if "%" in _ESCAPE.sub("", uri):
        return None  # a `%` that starts no valid escape
    found = _SCHEME.match(uri)
    if found is None:
        return None
    scheme, rest = found.group(1).lower(), found.group(2)
    try:
        rest = _ESCAPE.sub(_unescape, rest)
    except ValueError:
        return None
    rest, hash_, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    authority = None
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        path = slash + path
        userinfo, at, host = authority.rpartition("@")
        authority = f"{userinfo}{at}{host.lower()}"
    else:
        path = rest
    path = _remove_dot_segments(path)
    out = f"{scheme}:" + (f"//{authority}" if authority is not None else "") + path
    return out + (f"?{query}" if question else "") + (f"#{fragment}" if hash_ else "")


def _unescape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    if char == "\\" or ord(char) < 0x20 or char == "\x7f":
        raise ValueError("an encoded control character or backslash")
    return char if char in _DECODED else f"%{match.group(1).upper()}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4; a relative path cannot climb above its start either."""
    output: list[str] = []
    segments = path.split("/")
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1 or (output and output[0] != ""):
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/".join(output)
