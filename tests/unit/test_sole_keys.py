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
