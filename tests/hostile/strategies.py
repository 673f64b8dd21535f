"""Hypothesis strategies for hostile requests: wrong types for every field the gateway reads,
odd unicode, crafted model names, malformed, duplicated, deeply nested and non-UTF-8 bodies."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

# The fake upstream scripts failures by model name (tests/fakes/upstream.py): keep out of them.
_SCRIPTED = ("error-", "slow", "stream-abort", "stream-error", "stream-exception")

ODD_TEXT = [
    "",
    " ",
    "\x00",
    "nul\x00inside",
    "\u202eevil\u202c",  # right-to-left override
    "\ufeffbom",
    "\U0001f600" * 50,
    "a" * 70_000,
    "\r\nx-injected: 1",
    "../../etc/passwd",
    "%2e%2e%2f",
    "{{template}}",
    "\u0000\u001f\u007f\u0085\u2028\u2029",
]
CRAFTED_MODELS = [
    "{m}/../../v1/models",
    "{m}/x",
    "../{m}",
    "{m}?key=attacker",
    "{m}#fragment",
    "{m}%2F..%2Fadmin",
    "{m}%252F..",
    "{m}%3Fx",
    "{m}\\..\\x",
    "{m} ",
    "{m}\n",
    "{m}\x00",
    "{m}\u202e",
    "{m}\u0430",
    "{m}" + "z" * 300,
    "{m}:countTokens",
    "{m}@evil.example",
    "..",
    ".",
    "/",
    "",
]


def unscripted(name: str) -> bool:
    return not any(s in name for s in _SCRIPTED)


def model_names(valid: list[str]) -> st.SearchStrategy[str]:
    base = st.sampled_from(valid)
    crafted = st.tuples(st.sampled_from(CRAFTED_MODELS), base).map(lambda t: t[0].format(m=t[1]))
    random_text = st.text(max_size=24)
    near = st.from_regex(r"(gemini|claude|gpt)[-a-z0-9./?#%:@\\ ]{0,16}", fullmatch=True)
    return st.one_of(base, base, base, crafted, crafted, random_text, near).filter(unscripted)


def scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**64, 10**30]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(ODD_TEXT),
        st.text(max_size=16),
    )


def values() -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=8,
    )


def dumps(doc: Any) -> bytes:
    """Stdlib JSON (it writes integers past 64 bits and lone surrogates as escapes)."""
    return json.dumps(doc).encode()


_CHANGES = "none none none field field field field model model drop extra raw raw duplicate deep".split()


@st.composite
def bodies(draw: st.DrawFn, doc: dict[str, Any], fields: list[str], models: st.SearchStrategy[str]) -> bytes:
    """A surface's valid `doc`, then one hostile change of it."""
    doc = dict(doc)
    change = draw(st.sampled_from(_CHANGES))
    if change == "field":
        doc[draw(st.sampled_from(fields))] = draw(values())
    elif change == "model" and "model" in doc:
        doc["model"] = draw(models)
    elif change == "drop":
        doc.pop(draw(st.sampled_from(sorted(doc))), None)
    elif change == "extra":
        doc[draw(st.sampled_from(ODD_TEXT) | st.text(max_size=8))] = draw(values())
    elif change == "deep":
        depth = draw(st.sampled_from([200, 300, 600, 1100, 5000]))
        return dumps(doc)[:-1] + b', "messages": ' + b"[" * depth + b"]" * depth + b"}"
    elif change == "duplicate":
        # The gateway parses once and passes the bytes through: both sides must read one value.
        second = draw(st.sampled_from([*fields, "model"]))
        head = b'{"' + second.encode() + b'": ' + dumps(draw(values())) + b", "
        return head + dumps(doc)[1:] if draw(st.booleans()) else dumps(doc)[:-1] + b", " + head[1:-2] + b"}"
    body = dumps(doc)
    if change != "raw":
        return body
    raw = draw(
        st.sampled_from(
            ["truncate", "garbage", "utf8", "surrogate", "bom", "array", "scalar", "empty", "nul", "huge_number"]
        )
    )
    if raw == "truncate":
        return body[: draw(st.integers(min_value=0, max_value=max(0, len(body) - 1)))]
    if raw == "garbage":
        return body + b"}{,"
    if raw == "utf8":
        return body[:-1] + b', "x": "\xff\xfe\xc0\xaf"}'
    if raw == "surrogate":
        return body[:-1] + b', "x": "\\ud800", "system": "\\udfff"}'
    if raw == "bom":
        return b"\xef\xbb\xbf" + body
    if raw == "array":
        return b"[" + body + b"]"
    if raw == "scalar":
        return draw(st.sampled_from([b"null", b"1", b'"model"', b"true"]))
    if raw == "empty":
        return b""
    if raw == "nul":
        return body[:-1] + b', "x": "\x00"}'
    return body[:-1] + b', "max_tokens": 1' + b"0" * 400 + b"}"


def url_model(draw: st.DrawFn, models: st.SearchStrategy[str]) -> str:
    """A model as it may appear in a URL path: escaped once, twice, or partly raw."""
    name = draw(models)
    how = draw(st.sampled_from(["once", "once", "once", "twice", "keep"]))
    if how == "once":
        return quote(name, safe=":@")
    if how == "twice":
        return quote(quote(name, safe=":@"), safe="")
    return quote(name, safe=":@/?%#")


QUERIES = ["", "", "", "?beta=true", "?beta=true&key=x", "?alt=json", "?%00", "?a=%ff", "?api-version=x", "?\xff"]
