"""Resource grants match on the normalised URI: `..`, `.`, percent-encodings, case where it does
not matter; backslashes, NULs and double encodings are refused."""

from __future__ import annotations

import pytest

from sluice.mcp.access import Grants
from sluice.mcp.uris import normalise

DOCS = Grants(resources=frozenset({"fs/file:///repo/docs/*"}))


@pytest.mark.parametrize(
    "uri",
    [
        "file:///repo/docs/../secrets",
        "file:///repo/docs/%2e%2e/secrets",
        "file:///repo/docs/%2E%2E/secrets",
        "file:///repo/docs/.%2e/secrets",
        "file:///repo/docs/..%2fsecrets",
        "file:///repo/docs/%2e%2e%2fsecrets",
        "file:///repo/docs/a/../../secrets",
        "file:///repo/docs/./../secrets",
        "file:///repo/docs/..\\secrets",
        "file:///repo/docs/%5c..%5csecrets",
        "file:///repo/docs/%252e%252e/secrets",
        "file:///repo/docs/x%00/../../secrets",
        "file:///repo/docs/\x00",
        "file:///repo/docs/%zz",
        "/repo/docs/readme",  # no scheme
    ],
)
def test_a_folder_grant_never_reaches_outside_it(uri: str) -> None:
    assert not DOCS.resource("fs", uri)


@pytest.mark.parametrize(
    "uri",
    [
        "file:///repo/docs/readme.md",
        "FILE:///repo/docs/readme.md",
        "file:///repo/docs/./readme.md",
        "file:///repo/docs/sub/../readme.md",
        "file:///repo/docs/%72eadme.md",
        "file:///repo/docs/deep/er/file.txt",
    ],
)
def test_other_spellings_inside_the_folder_still_match(uri: str) -> None:
    assert DOCS.resource("fs", uri)


def test_the_normal_form() -> None:
    assert normalise("FILE://Host.Example/Repo/./a/../b?q=%7e%2f#F") == "file://host.example/Repo/b?q=~/#F"
    assert normalise("https://User@EXAMPLE.com/a%20b") == "https://User@example.com/a%20b"  # userinfo kept
    assert normalise("file:///a%3fb") == "file:///a%3Fb"  # reserved characters stay encoded
    assert normalise("file:///../../etc/passwd") == "file:///etc/passwd"  # never above the root
    assert normalise("notes://readme") == "notes://readme"
    assert normalise("urn:example:a") == "urn:example:a"


def test_patterns_are_normalised_like_uris() -> None:
    grants = Grants(resources=frozenset({"fs/FILE:///repo/docs/./*"}))
    assert grants.resource("fs", "file:///repo/docs/a") and not grants.resource("fs", "file:///repo/x")
