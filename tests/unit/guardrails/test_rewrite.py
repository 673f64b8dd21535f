"""The redacted body from the caller's bytes, searching only what changed since the session's
previous body: it must find every occurrence a search of the whole body finds, or a secret would
reach the provider."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.guardrails import rewrite as rw

# A two-letter alphabet makes occurrences (and ones crossing the changed region's edges) frequent.
chunks = st.binary(min_size=0, max_size=120).map(lambda b: bytes(97 + (x & 1) for x in b))


def _naive_unchanged(body: bytes, old: bytes) -> tuple[int, int]:
    limit = min(len(body), len(old))
    prefix = 0
    while prefix < limit and body[prefix] == old[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and body[-1 - suffix] == old[-1 - suffix]:
        suffix += 1
    return prefix, suffix


@settings(max_examples=400, deadline=None)
@given(head=chunks, old_mid=chunks, new_mid=chunks, tail=chunks, needle=st.sampled_from([b"a", b"ab", b"bab", b"aab"]))
def test_the_occurrences_found_from_the_memo_are_those_of_a_whole_search(
    head: bytes, old_mid: bytes, new_mid: bytes, tail: bytes, needle: bytes
) -> None:
    old, body = head + old_mid + tail, head + new_mid + tail
    unchanged = rw._unchanged(body, old)
    assert unchanged == _naive_unchanged(body, old)
    known = rw._find_all(old, needle, 0, len(old))
    assert rw._moved(body, needle, known, len(old), *unchanged) == rw._find_all(body, needle, 0, len(body))


SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8sXkL2Ab"


def _body(*texts: str) -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": t} for t in texts]})


def test_a_second_request_replaces_the_value_where_it_was_and_where_it_is_new() -> None:
    placeholder = "[sluice:aws_secret_key:0123456789ab]"
    first = _body("a", f"key={SECRET}", "b")
    out, memo = rw.rewrite(first, {SECRET: placeholder}, None) or (b"", None)
    assert SECRET.encode() not in out and out.count(placeholder.encode()) == 1
    # The next turn: the history again, the value pasted in a new message, and an edit before it.
    second = _body("a!", f"key={SECRET}", "b", f"again {SECRET} and {SECRET}")
    done = rw.rewrite(second, {SECRET: placeholder}, memo)
    assert done is not None
    out, memo = done
    assert SECRET.encode() not in out and out.count(placeholder.encode()) == 3
    assert orjson.loads(out) == orjson.loads(second.replace(SECRET.encode(), placeholder.encode()))
    assert memo.starts[SECRET.encode()] == rw._find_all(second, SECRET.encode(), 0, len(second))


def test_a_value_escaped_otherwise_is_left_to_re_encoding() -> None:
    body = b'{"messages":[{"role":"user","content":"k=wJalrXUtnFEMI\\/K7MDENG\\/bPxRfiCYzq8sXkL2Ab"}]}'
    assert rw.rewrite(body, {SECRET: "[sluice:aws_secret_key:0123456789ab]"}, None) is None


def test_a_value_that_prefixes_a_longer_one_leaves_none_of_the_longer_in_clear() -> None:
    """Two values found in different strings, the shorter a prefix of the longer: where the longer
    occurs, both start at one byte, and the longer must win (its tail was left in clear)."""
    short, long = "wJalrXUtnFEMI/K7", SECRET
    body = _body(f"a={short}", f"key={long}")
    out, _ = rw.rewrite(
        body, {short: "[sluice:env_secret:aaaaaaaaaaaa]", long: "[sluice:aws_secret_key:bbbbbbbbbbbb]"}, None
    ) or (b"", None)
    assert long[len(short) :].encode() not in out and short.encode() not in out
    assert orjson.loads(out)["messages"][1]["content"] == "key=[sluice:aws_secret_key:bbbbbbbbbbbb]"


def test_partly_overlapping_values_are_both_redacted_whole() -> None:
    """Where two values overlap (the end of one is the start of the other), neither keeps a byte in
    clear: the second one's placeholder follows the first's."""
    first, second = "Xy7Qw9Zr4Tp2Lm8N", "Lm8Nv3Bk6Hs1Dj5F"
    body = _body(f"one {first}", f"two {second}", "both Xy7Qw9Zr4Tp2Lm8Nv3Bk6Hs1Dj5F end")
    swaps = {first: "[sluice:env_secret:aaaaaaaaaaaa]", second: "[sluice:env_secret:bbbbbbbbbbbb]"}
    out, _ = rw.rewrite(body, swaps, None) or (b"", None)
    both = orjson.loads(out)["messages"][2]["content"]
    assert both == "both [sluice:env_secret:aaaaaaaaaaaa][sluice:env_secret:bbbbbbbbbbbb] end"
