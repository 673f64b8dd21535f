"""sluice.http.inference.sole_keys: a body naming a governed top-level field twice is re-encoded
from the parsed document, everything else passes through byte for byte."""

from __future__ import annotations

import orjson
import pytest

from sluice.core.errors import ErrorKind, SluiceError
from sluice.http.inference import sole_keys


def test_plain_bodies_pass_untouched_even_with_model_inside() -> None:
    body = b'{"model": "a", "messages": [{"role": "user", "content": "say \\"model\\""}], "x": {"model": "b"}}'
    assert sole_keys(body, orjson.loads(body)) is body


def test_a_duplicated_governed_key_is_re_encoded_as_read() -> None:
    body = b'{"model": "first", "stream": false, "model": "last", "stream": true}'
    doc = orjson.loads(body)
    assert orjson.loads(sole_keys(body, doc)) == {"model": "last", "stream": True}
    assert sole_keys(body, doc).count(b'"model"') == 1


def test_a_duplicated_key_in_a_body_too_deep_to_re_encode_is_a_400() -> None:
    depth = 1000  # within orjson's reading limit, past its writing limit and the stdlib parser's
    body = b'{"model": "a", "model": "b", "x": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(SluiceError) as refused:
        sole_keys(body, orjson.loads(body))
    assert refused.value.kind is ErrorKind.CALLER_BAD_REQUEST


@pytest.mark.parametrize(
    "first",
    [
        b'"\\u006dodel"',  # "model" with its m escaped
        b'"mo\\u0064el"',
        b'"\\u006D\\u006F\\u0064\\u0065\\u006C"',  # every letter, upper-case hex
        b'"max\\u005ftokens"',  # the underscore escaped
    ],
)
def test_a_governed_key_repeated_in_an_escaped_spelling_is_re_encoded(first: bytes) -> None:
    """JSON decodes escapes in keys, so `"\\u006dodel"` is `model`: an upstream that keeps the first
    of two would serve (or allow) another value than the gateway read (the last)."""
    value = b'"claude-opus-4-1"' if b"max" not in first else b"64000"
    body = b"{" + first + b":" + value + b', "model": "claude-haiku-4-5", "max_tokens": 10}'
    doc = orjson.loads(body)
    sent = sole_keys(body, doc)
    assert sent is not body
    assert orjson.loads(sent) == doc and b"\\u" not in sent


def test_escapes_elsewhere_leave_the_body_untouched() -> None:
    body = b'{"model": "a", "messages": [{"role": "user", "content": "caf\\u00e9 \\u4e2d \\ud83d\\ude00"}]}'
    assert sole_keys(body, orjson.loads(body)) is body
