"""Names that decide who someone is (a user's userName, the groups that give roles, teams and
access profiles) match case-insensitively in ASCII only: Unicode case folding maps other
letters onto ASCII ones (KELVIN SIGN to `k`, LONG S to `s`, `ß` to `ss`), so an address or a
group name someone else can register would otherwise stand for an existing one."""

from __future__ import annotations

from typing import Any

import pytest

from sluice.auth.oidc import link_of, roles_for, teams_for
from sluice.governance.profiles import profile_for_groups
from sluice.settings import AccessProfileConfig, OidcConfig
from sluice.storage.records import ConfigObject

CONFIG = OidcConfig(
    issuer="https://idp.example",
    client_id="sluice",
    redirect_uri="https://sluice.example/auth/callback",
    role_mapping={"sluice-admins": ["admin"]},
    team_mapping={"platform-leads": ["team-platform"]},
)


def _user(user_id: str, user_name: str) -> ConfigObject:
    return ConfigObject("user", user_id, {"userName": user_name, "active": True})


def _claims(sub: str, email: str) -> dict[str, Any]:
    return {"sub": sub, "email": email, "email_verified": True}


@pytest.mark.parametrize(
    "lookalike",
    [
        "\u212aate@example.com",  # KELVIN SIGN: casefolds to "kate@example.com"
        "kate@exampl\u0435.com",  # CYRILLIC SMALL LETTER IE
    ],
)
def test_a_lookalike_address_links_nobody(lookalike: str) -> None:
    kate = _user("u-kate", "kate@example.com")  # provisioned by SCIM, never signed in
    assert link_of([kate], _claims("attacker", lookalike), CONFIG).user is None


def test_an_address_in_another_case_still_links() -> None:
    kate = _user("u-kate", "kate@example.com")
    assert link_of([kate], _claims("kate-sub", "Kate@Example.COM"), CONFIG).user is kate


def test_lookalike_group_names_give_no_role_team_or_profile() -> None:
    long_s = "\u017fluice-admins"  # LONG S: casefolds to "sluice-admins"
    assert roles_for(CONFIG, [long_s]) == frozenset()
    assert roles_for(CONFIG, ["SLUICE-ADMINS"]) == {"admin"}
    assert teams_for(CONFIG, ["platform-lead\u017f"]) == frozenset()
    assert teams_for(CONFIG, ["Platform-Leads"]) == {"team-platform"}
    ops = AccessProfileConfig(id="ops", groups=["ops-\u212aeys"])  # "ops-keys" once folded
    assert profile_for_groups([ops], ["ops-keys"]) is None
    assert profile_for_groups([AccessProfileConfig(id="eng", groups=["Engineering"])], ["engineering"]) == "eng"
