from __future__ import annotations

from typing import Any

import pytest

from sluice.auth.scim_ops import ScimError, apply_patch, matches, parse_filter

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
USER: dict[str, Any] = {
    "id": "u1",
    "userName": "Dana@Example.com",
    "externalId": "00uAbC",
    "active": True,
    "emails": [{"value": "dana@example.com", "type": "work", "primary": True}],
    "name": {"givenName": "Dana", "familyName": "Dev"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "dana@example.com"', True),  # case-insensitive (RFC 7643 caseExact false)
        ('externalId eq "00uabc"', False),  # externalId is case-exact
        ('externalId eq "00uAbC"', True),
        ('emails.value co "example"', True),
        ('userName sw "dana" and active eq true', True),
        ("active eq false", False),
        ("name.familyName pr", True),
        ('displayName eq "x"', False),
    ],
)
def test_filters(text: str, expected: bool) -> None:
    assert matches(USER, parse_filter(text)) is expected


def test_unsupported_filters_are_scim_errors() -> None:
    for text in ('userName regex "x"', "userName eq", 'userName eq "a" or userName eq "b"'):
        with pytest.raises(ScimError) as err:
            parse_filter(text)
        assert err.value.status == 400 and err.value.scim_type == "invalidFilter"


def test_okta_deactivation_and_replace_without_path() -> None:
    out = apply_patch(USER, [{"op": "replace", "value": {"active": False, "name": {"givenName": "D"}}}])
    assert out["active"] is False and out["name"] == {"givenName": "D"}
    assert USER["active"] is True  # the input is not touched


def test_entra_shapes() -> None:
    ops = [
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "d2@example.com"},
        {"op": "Add", "path": 'emails[type eq "home"].value', "value": "home@example.com"},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "R&D"},
        {"op": "Replace", "path": "name.familyName", "value": "Smith"},
    ]
    out = apply_patch(USER, ops)
    assert out["active"] is False
    assert out["emails"] == [
        {"value": "d2@example.com", "type": "work", "primary": True},
        {"type": "home", "value": "home@example.com"},
    ]
    assert out[ENTERPRISE] == {"department": "R&D"} and out["name"]["familyName"] == "Smith"


def test_group_members_add_and_remove_in_both_shapes() -> None:
    group: dict[str, Any] = {"displayName": "G", "members": [{"value": "a"}]}
    added = apply_patch(group, [{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "b"}]}])
    assert added["members"] == [{"value": "a"}, {"value": "b"}]  # no duplicate
    okta = apply_patch(added, [{"op": "remove", "path": 'members[value eq "a"]'}])
    assert okta["members"] == [{"value": "b"}]
    entra = apply_patch(added, [{"op": "Remove", "path": "members", "value": [{"value": "b"}]}])
    assert entra["members"] == [{"value": "a"}]
    everyone = apply_patch(added, [{"op": "remove", "path": "members"}])
    assert "members" not in everyone


def test_bad_operations_change_nothing() -> None:
    for ops in ([{"op": "move", "path": "x"}], [{"op": "remove"}], [{"path": "x"}], [{"op": "add", "path": "a b"}]):
        with pytest.raises(ScimError):
            apply_patch(USER, ops)  # type: ignore[arg-type]
