"""The post-sign-in `next` parameter: same-origin relative paths only, however they are spelled."""

from __future__ import annotations

import pytest

from sluice.auth.oidc import DEFAULT_NEXT, local_path

HOSTILE = [
    "",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "evil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",  # encoded twice
    "/%25252F%25252Fevil.example",  # three times
    "/\t/evil.example",  # browsers drop tabs and newlines in URLs: //evil.example
    "/\n/evil.example",
    "/%09/evil.example",
    "/%0d%0a/evil.example",
    "/\x00",
    "/\x7f",
    "/\u0085",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("path", HOSTILE)
def test_anything_that_could_leave_the_site_becomes_the_default(path: str) -> None:
    assert local_path(path) == DEFAULT_NEXT


@pytest.mark.parametrize("path", ["/auth/me", "/api/me?x=1", "/console/keys#top", "/a/b%20c", "/caf%C3%A9"])
def test_paths_on_the_gateway_are_kept(path: str) -> None:
    assert local_path(path) == path
