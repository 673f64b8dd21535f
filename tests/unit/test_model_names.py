"""The model-name rule (sluice.core.model_names): real names pass, anything that could change an
upstream path, query or host does not, and every accepted name stays one inert path segment once
a provider escapes it."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.model_names import check_model_name, check_url_model, model_name_problem

REAL_NAMES = [
    "claude-sonnet-4-6",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5@20250929",  # Vertex
    "us.anthropic.claude-haiku-4-5-20251001-v1:0",  # Bedrock inference profile
    "gemini-2.5-flash",
    "gpt-4o-mini",
    "ft:gpt-4o-mini-2024-07-18:my-org:custom_suffix:9abcDEF1",  # an OpenAI fine-tune
    "llama3.1:8b-instruct-q4_K_M",  # Ollama
    "openai/gpt-4o",  # a provider prefix
    "openrouter/anthropic/claude-3.5-sonnet:beta",
    "meta-llama/Llama-3.1-8B-Instruct",  # a vendor's namespace, sent in the body
    "text-embedding-3-small",
]
REFUSED = [
    "",
    "..",
    ".",
    "a/../b",
    "../etc",
    "a/./b",
    "a//b",
    "/gpt-4o",
    "gpt-4o/",
    "gpt-4o?x=1",
    "gpt-4o#x",
    "gpt-4o%2F..",
    "gpt-4o%252F",
    "gpt-4o%3F",
    "gpt\\4o",
    "gpt 4o",
    "gpt-4o\t",
    "gpt-4o\n",
    "gpt-4o\r\nHost: x",
    "gpt-4o\x00",
    "gpt-4o\x7f",
    "gpt-4o\u202e",
    "gpt-4\u043e",  # a Cyrillic 'o'
    "gpt-4o\ufeff",
    "x" * 257,
]


@pytest.mark.parametrize("name", REAL_NAMES)
def test_real_model_names_pass(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", REFUSED)
def test_names_that_could_change_a_url_are_refused_with_a_400(name: str) -> None:
    with pytest.raises(SluiceError) as caught:
        check_model_name(name)
    assert caught.value.kind is ErrorKind.CALLER_BAD_REQUEST
    assert caught.value.message.isascii()  # the name is quoted back escaped, never raw


def test_a_url_provider_takes_no_slash_but_the_rest_of_the_rule() -> None:
    assert check_url_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock")
    for name in ("meta-llama/Llama-3.1-8B-Instruct", "a/b", "..", "x?y"):
        with pytest.raises(SluiceError) as caught:
            check_url_model(name, "gemini")
        assert caught.value.kind is ErrorKind.CALLER_BAD_REQUEST


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40) | st.from_regex(r"[a-z.%/?#:@\\]{1,12}"))
def test_any_accepted_url_name_escapes_to_one_inert_segment(name: str) -> None:
    """Whatever the text, if the rule takes it for a URL provider, the escaped name is one path
    segment that neither yarl nor the upstream can normalise away or split."""
    try:
        check_url_model(name, "p")
    except SluiceError:
        assert model_name_problem(name) is not None or "/" in name
        return
    escaped = quote(name, safe="")
    url = URL(f"https://upstream.example/v1/models/{escaped}:generateContent", encoded=True)
    assert url.host == "upstream.example" and url.query_string == "" and url.fragment == ""
    assert url.raw_parts == ("/", "v1", "models", f"{escaped}:generateContent")
    assert unquote(escaped) == name
    # Even a decoding upstream sees the same single segment: nothing in it decodes to / ? # or '..'.
    assert not set(unquote(escaped)) & set("/?#\\%") and ".." not in name


def _problem_by_parts(name: str) -> str | None:
    """model_name_problem as it read the parts before: split on '/', each part looked at."""
    segments = name.split("/")
    if any(not s for s in segments):
        return "'/' in a model name only separates non-empty parts (provider/model)"
    if any(s == "." for s in segments):
        return "a model name may not have a '.' part"
    return None


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.text(alphabet="a./", min_size=1, max_size=12))
def test_the_parts_rule_reads_as_splitting_the_name(name: str) -> None:
    problem = model_name_problem(name)
    if ".." in name:
        assert problem == "a model name may not contain '..'"
    else:
        assert problem == _problem_by_parts(name)
