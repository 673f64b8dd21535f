"""sluice.http.inference.sole_keys: a body naming a governed top-level field twice is re-encoded
from the parsed document, everything else passes through byte for byte."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat
from sluice.formats.registry import record_of
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


def test_orjson_keeps_the_last_of_a_repeated_key() -> None:
    """sole_keys relies on it: the last top-level key of a name holds the parsed value."""
    assert orjson.loads(b'{"model": 1, "x": {"model": 2}, "\\u006dodel": [3]}') == {"model": [3], "x": {"model": 2}}


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "a", "x": {"model": "b"}}',  # nested, same type as the top-level value
        b'{"x": [{"model": "b"}, {"y": 1, "model": "c"}], "model": "a"}',
        b'{"model": "a", "tools": [{"input_schema": {"properties": {"model": {"type": "string"}}}}]}',
        b'{"a\\"model": 1, "model": "x"}',  # the tail of a longer key
        b'{"model": "a", "m": "\\"model\\": \\"b\\""}',  # inside a string
        b'{"model": "a", "x": {"\\u006dodel": "b"}}',  # nested, escaped
    ],
)
def test_a_governed_name_nested_or_inside_a_string_leaves_the_body_untouched(body: bytes) -> None:
    assert sole_keys(body, orjson.loads(body)) is body


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "a", "x": {"y": 1}, "model": "b"}',
        b'{"x": {"model": "n"}, "model": "a",\n  "model" : "b", "y": {"model": {}}}',  # last one nested
        b' \n{ "stream" : true , "messages": [], "stream":false}',
        b'{"n": 1, "x": [], "n": 2}',
        b'{"generationConfig": {"maxOutputTokens": 9}, "contents": [], "generationConfig": {}}',
        b'{"max_tokens": 1, "max_tokens": 100000}',
        b'{"model": "a", "x": {"model": "b"}, "mod\\u0065l": "c"}',
    ],
)
def test_a_governed_key_twice_at_the_top_is_re_encoded_whatever_is_nested(body: bytes) -> None:
    doc = orjson.loads(body)
    sent = sole_keys(body, doc)
    assert sent is not body and orjson.loads(sent) == doc


@pytest.mark.parametrize("repeated", [False, True])
def test_many_nested_governed_keys_are_still_decided_exactly(repeated: bool) -> None:
    """Past _MAX_SPOTS keys or _MAX_TESTS prefix parses the body is parsed once more instead."""
    nested = b", ".join(b'{"x": 1, "model": "m%d"}' % i for i in range(200))
    body = b'{"model": "a", "list": [' + nested + b"]" + (b', "model": "b"' if repeated else b"") + b"}"
    doc = orjson.loads(body)
    assert (sole_keys(body, doc) is not body) is repeated


_GOVERNED_NAMES = ["model", "stream", "max_tokens", "max_completion_tokens", "max_output_tokens", "n"]
# Governed on some wires only (content fields), and a name no wire governs.
_OTHER_NAMES = ["messages", "input", "contents", "x", "models"]


def _spelled(draw: st.DrawFn, name: str) -> bytes:
    """`name` as a JSON string, each letter escaped or not."""
    out = b'"'
    for ch in name:
        out += (b"\\u%04" + draw(st.sampled_from([b"x", b"X"]))) % ord(ch) if draw(st.booleans()) else ch.encode()
    return out + b'"'


@st.composite
def _objects(draw: st.DrawFn, depth: int = 0) -> tuple[bytes, list[str]]:
    """A JSON object as bytes (keys drawn from the governed names and others, some spelled with
    escapes, some repeated, odd whitespace) and its top-level keys in order."""
    ws = st.sampled_from([b"", b" ", b"\n  ", b"\t"])
    members, keys = [], []
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from([*_GOVERNED_NAMES, *_OTHER_NAMES]))
        key = _spelled(draw, name) if draw(st.integers(0, 3)) == 0 else b'"' + name.encode() + b'"'
        kind = draw(st.integers(0, 3)) if depth < 3 else 0
        if kind == 0:
            value = draw(st.sampled_from([b'"model"', b"1", b"true", b"null", b'"\\"model\\": 2"', b"[]"]))
        elif kind == 1:
            value = draw(_objects(depth + 1))[0]
        elif kind == 2:
            value = b"[" + draw(_objects(depth + 1))[0] + b"]"
        else:
            value = b'{"model": ' + draw(_objects(depth + 1))[0] + b"}"
        members.append(draw(ws) + key + draw(ws) + b":" + draw(ws) + value + draw(ws))
        keys.append(name)
    return b"{" + b",".join(members) + draw(ws) + b"}", keys


@given(_objects(), st.sampled_from([None, *WireFormat]))
@settings(max_examples=600, deadline=None)
def test_re_encoded_exactly_when_a_governed_key_repeats_at_the_top(
    drawn: tuple[bytes, list[str]], wire: WireFormat | None
) -> None:
    body, keys = drawn
    doc = orjson.loads(body)
    governed = set().union(*(record_of(w).governed for w in WireFormat)) if wire is None else record_of(wire).governed
    repeated = any(keys.count(name) > 1 for name in governed)
    sent = sole_keys(body, doc, wire)
    assert (sent is not body) is repeated, body
    assert orjson.loads(sent) == doc


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        (WireFormat.ANTHROPIC_MESSAGES, b"messages"),
        (WireFormat.ANTHROPIC_MESSAGES, b"system"),
        (WireFormat.OPENAI_CHAT, b"messages"),
        (WireFormat.OPENAI_CHAT, b"input"),  # a Responses body posted to Chat Completions (Cursor)
        (WireFormat.OPENAI_RESPONSES, b"input"),
        (WireFormat.OPENAI_RESPONSES, b"instructions"),
        (WireFormat.GEMINI, b"contents"),
        (WireFormat.GEMINI, b"systemInstruction"),
        (WireFormat.OPENAI_EMBEDDINGS, b"input"),
        (WireFormat.BEDROCK_CONVERSE, b"messages"),
    ],
)
def test_a_repeated_content_field_of_the_wire_is_re_encoded(wire: WireFormat, field: bytes) -> None:
    """The guardrails scan the last copy (orjson's); a provider keeping the first must not get another."""
    body = b'{"%s": "secret", "model": "m", "%s": "scanned"}' % (field, field)
    sent = sole_keys(body, orjson.loads(body), wire)
    assert sent.count(b'"' + field + b'"') == 1 and b"secret" not in sent


def test_a_name_the_wire_nests_is_not_governed_there() -> None:
    """Anthropic's `tool_use.input` is in every agent's body; `input` is not an Anthropic field."""
    use = b'{"type": "tool_use", "id": "t", "name": "Read", "input": {"p": 1}}'
    body = b'{"model": "m", "messages": [{"role": "assistant", "content": [%s, %s]}]}' % (use, use)
    assert sole_keys(body, orjson.loads(body), WireFormat.ANTHROPIC_MESSAGES) is body


def test_a_name_repeated_only_nested_leaves_the_body_untouched_on_every_wire() -> None:
    """`input` twice, both nested, and no top-level `input`: nothing to decide, on wires that govern it too."""
    body = b'{"model": "m", "a": {"input": 1}, "b": [{"input": 2}]}'
    for wire in WireFormat:
        assert sole_keys(body, orjson.loads(body), wire) is body
