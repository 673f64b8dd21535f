"""Secrets split across two consecutive content strings of one top-level field (a name ending one
text block, its value opening the next; a key cut in its middle): found at the junction, redacted
in every string they touch (one placeholder per part, each restoring exactly its part), recorded
once with the whole value's hash and length; on the session's next turn only new junctions are
scanned. Each string on its own holds no secret the per-string scan can find."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from sluice.guardrails import walk
from sluice.guardrails.service import Guardrails, RequestGuard
from sluice.guardrails.vault import PLACEHOLDER
from sluice.settings import GuardrailsConfig
from sluice.storage.records import VirtualKey

KEY = VirtualKey(id="vk1", name="dev", key_hash="h", key_hint="sk")
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8sXkL2Ab"
NAMED = f"AWS_SECRET_ACCESS_KEY={SECRET}"
ANTHROPIC = "sk-ant-api03-" + "Zq3xV8mN2pL5kJ7hG4fD1sA9wE6rT0yU" * 3 + "AA"


def _guard(rails: Guardrails | None = None, session: str = "s1") -> RequestGuard:
    guard = (rails or Guardrails(GuardrailsConfig(placeholder_key="k"))).start(KEY, session)
    assert guard is not None
    return guard


def _doc(*blocks: str, system: str = "You are a coding agent.") -> dict[str, Any]:
    return {
        "model": "m",
        "system": system,
        "messages": [
            {"role": "user", "content": "read .env"},
            {"role": "user", "content": [{"type": "text", "text": b} for b in blocks]},
        ],
    }


def _sent(guard: RequestGuard, doc: dict[str, Any]) -> tuple[bytes, list[str]]:
    body = guard.request_body(doc, orjson.dumps(doc))
    return body, [b["text"] for b in orjson.loads(body)["messages"][1]["content"]]


@pytest.mark.parametrize("text", [NAMED, f"export {NAMED}\nDEBUG=1\n", f"aws_secret_access_key = '{SECRET}'"])
def test_a_named_secret_split_at_every_offset_is_redacted_in_both_strings(text: str) -> None:
    rails = Guardrails(GuardrailsConfig(placeholder_key="k"))
    for cut in range(1, len(text)):
        guard = _guard(rails, session=f"s{cut}")
        body, blocks = _sent(guard, _doc(text[:cut], text[cut:]))
        assert PLACEHOLDER.sub("", "".join(blocks)) == text.replace(SECRET, ""), cut
        assert "".join(guard.vault.restore(b) for b in blocks) == text, cut  # each part restores its own
        assert b"wJalrXUtnFEMI" not in body and b"sXkL2Ab" not in body
        [event] = guard.events()
        assert event["kind"] == "aws_secret_key" and event["length"] == 40, cut
        assert event["hmac"] == guard.rules.digest(SECRET)


@pytest.mark.parametrize(
    "key",
    [ANTHROPIC, "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "AKIAQWERTYUIOPASDFGH"],
)
def test_a_secret_with_a_prefix_split_in_its_middle_is_redacted_whole(key: str) -> None:
    text = f"the key is {key} keep it safe"
    at = text.index(key)
    for cut in (at + 2, at + len(key) // 2, at + len(key) - 3):
        guard = _guard()
        _, blocks = _sent(guard, _doc(text[:cut], text[cut:]))
        assert PLACEHOLDER.sub("", "".join(blocks)) == text.replace(key, ""), cut
        assert "".join(guard.vault.restore(b) for b in blocks) == text
        [event] = guard.events()
        assert event["length"] == len(key) and event["hmac"] == guard.rules.digest(key), cut


def test_the_provider_gets_neither_half_and_the_tool_call_gets_the_value_back() -> None:
    guard = _guard()
    body, blocks = _sent(
        guard, _doc("Here is my .env:\nAWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7", "MDENG/bPxRfiCYzq8sXkL2Ab\n")
    )
    assert b"wJalrXUtnFEMI/K7" not in body and b"MDENG/bPxRfiCYzq8sXkL2Ab" not in body
    echoed = PLACEHOLDER.findall(blocks[0])[-1] + PLACEHOLDER.findall(blocks[1])[0]  # the model writes both back
    answer = {"content": [{"type": "tool_use", "id": "t", "name": "Write", "input": {"content": f"K={echoed}"}}]}
    restored = orjson.loads(guard.answer(orjson.dumps(answer)))
    assert restored["content"][0]["input"]["content"] == f"K={SECRET}"


def test_unrelated_strings_are_not_joined_into_a_finding() -> None:
    """Strings that only mention secrets, or end and open with words, give nothing; the same
    request with a split secret in it gives that one."""
    unrelated = [
        ("The secret of the recipe is", "time and patience, 42 minutes."),
        ("token = os.environ['TOKEN']", "password: ${DB_PASSWORD}"),
        ("api_key: your-key-here", "AKIA is how AWS key ids open"),
        ("aws_secret_access_key=", "see the docs for where to find it"),
    ]
    blocks = [t for pair in unrelated for t in pair]
    guard = _guard()
    doc = _doc(*blocks)
    assert guard.request_body(doc, b"as sent") == b"as sent" and guard.count == 0
    guard = _guard(session="s2")
    _, sent = _sent(guard, _doc(*blocks, NAMED[:30], NAMED[30:]))
    assert sent[: len(blocks)] == blocks and [e["kind"] for e in guard.events()] == ["aws_secret_key"]


def test_two_top_level_fields_are_not_joined() -> None:
    """A name ending the system prompt and a value opening the first message are not read as one
    (docs/guardrails.md: the junctions are within a field); within the messages they are."""
    guard = _guard()
    doc = {
        "model": "m",
        "system": "config: AWS_SECRET_ACCESS_KEY=",
        "messages": [{"role": "user", "content": [{"type": "text", "text": SECRET + "\nand then"}]}],
    }
    assert guard.request_body(copy.deepcopy(doc), b"as sent") == b"as sent" and guard.count == 0
    doc["messages"][0]["content"].insert(0, {"type": "text", "text": "AWS_SECRET_ACCESS_KEY="})
    body = guard.request_body(doc, orjson.dumps(doc))
    assert SECRET.encode() not in body and guard.count == 1


def test_a_warm_turn_scans_only_its_new_junctions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next turn repeats the history: only the junctions next to what is new are scanned, and a
    secret split across the history's strings is redacted (and recorded) again."""
    scanned: list[list[int]] = []
    original = walk.find_across_all

    def spy(texts: Any, fields: Any, junctions: Any) -> Any:
        scanned.append(list(junctions))
        return original(texts, fields, junctions)

    monkeypatch.setattr(walk, "find_across_all", spy)
    rails = Guardrails(GuardrailsConfig(placeholder_key="k"))
    history = [f"line {i} of a file, nothing in it" for i in range(40)]
    first = _doc(*history[:20], NAMED[:25], NAMED[25:], *history[20:])
    guard = _guard(rails)
    guard.request_body(first, orjson.dumps(first))
    assert guard.count == 1 and len(scanned[-1]) >= 40
    second = copy.deepcopy(_doc(*history[:20], NAMED[:25], NAMED[25:], *history[20:]))
    second["messages"].append({"role": "user", "content": "now fix it"})
    guard = _guard(rails)
    body = guard.request_body(second, orjson.dumps(second))
    assert SECRET[3:].encode() not in body and guard.count == 1
    # The strings holding the parts are never kept as clean, so their junctions are scanned again,
    # with the new message's: a handful, not the history's 40.
    assert 1 <= len(scanned[-1]) <= 6, scanned[-1]
    recent = rails.sets["standard"].recent_of("vk1\0s1")
    assert recent is not None and not any(SECRET[3:] in s for s in recent.strings)
    assert not any(SECRET[3:] in s for place in rails.sets["standard"].clean.values() for s in place)


def test_a_window_reads_on_while_a_match_runs_to_its_end() -> None:
    """A private key whose header ends one string and whose body runs far into the next."""
    from sluice.guardrails.secrets import find_across

    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" * 20
    texts = ["cat id_rsa\n-----BEGIN PRIVATE KEY-----\n", body + "\n-----END PRIVATE KEY-----\n", "done"]
    [(kind, parts, first, last)] = find_across(texts, [1, 2])
    assert kind == "private_key" and (first, last) == (0, 1)
    assert parts[-1] == (1, 0, len(texts[1]) - 1)  # the whole block, END line included


@pytest.mark.parametrize(
    "between",
    ["nothing here", "AKIAQWERTYUIOPASDFGH"],  # clean (the cursor skips it), or with a finding (never kept)
)
def test_two_remembered_strings_that_become_neighbours_are_scanned_at_their_junction(between: str) -> None:
    """The previous request had a string between them; the next one drops it. Both are still the
    previous request's strings, but their junction is new."""
    rails = Guardrails(GuardrailsConfig(placeholder_key="k"))
    name, value = "config:\nAWS_SECRET_ACCESS_KEY=", f"{SECRET}\nend"
    guard = _guard(rails)
    first = _doc("intro", name, between, value, "outro")
    guard.request_body(first, orjson.dumps(first))
    assert all(e["kind"] != "aws_secret_key" for e in guard.events())
    guard = _guard(rails)
    body, _ = _sent(guard, _doc("intro", name, value, "outro"))
    assert SECRET.encode() not in body and [e["kind"] for e in guard.events()] == ["aws_secret_key"]


def test_a_body_crafted_of_many_adjacent_token_pieces_is_redacted_whole() -> None:
    """Hundreds of strings, each a token that runs on into the next: every value found is redacted
    and none is left in clear. (Each window's values were tested against every other one's: a
    1.2 MB body of such pieces took 33 s, where a sweep over the sorted spans takes one.)"""
    pieces = [f"x ghp_{'A' * 140}" for _ in range(600)]
    guard = _guard()
    body, blocks = _sent(guard, _doc(*pieces))
    assert b"ghp_AAAA" not in body
    assert "".join(guard.vault.restore(b) for b in blocks) == "".join(pieces)


def test_of_two_values_found_over_the_same_span_one_is_kept() -> None:
    from sluice.guardrails.secrets import _outermost

    same = [(1, 4, 9), (2, 0, 3)]
    found = [("a", list(same), 1, 2), ("b", list(same), 1, 2), ("a", [(1, 5, 9), (2, 0, 2)], 1, 2)]
    # The third lies inside the others; of the first two (one span, two kinds) the first is kept:
    # dropping both would leave the value in clear.
    assert _outermost(found) == [found[0]]
    apart = [("a", [(1, 4, 9), (2, 0, 3)], 1, 2), ("a", [(2, 1, 5), (3, 0, 1)], 2, 3)]
    assert _outermost(apart) == apart  # overlapping in part: both stay
