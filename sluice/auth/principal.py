"""The authenticated caller of the admin surfaces, however they proved who they are.

Every way in (the bootstrap admin token, an admin API token, an OpenID Connect ID/access token,
a dashboard session cookie, a SCIM bearer token) ends as a `Principal`; permission checks look at
nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["admin", "security-auditor", "team-lead", "developer", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "security-auditor", "team-lead", "developer", "viewer")


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str  # stable id: the user id, or e.g. "bootstrap", "token:<id>"
    roles: frozenset[Role]
    via: Literal["bootstrap", "api-token", "oidc", "session", "scim"]
    user_id: str | None = None  # the Sluice user, when the caller is a person
    email: str | None = None
    name: str | None = None
    teams: frozenset[str] = field(default_factory=frozenset)  # teams whose lead/member they are

    @property
    def actor(self) -> str:
        """How configuration events and audit records name this caller."""
        return f"{self.via}:{self.email or self.subject}"


class Authenticator(Protocol):
    """One way of proving identity. Returns None when the request does not carry this kind of
    credential, and raises SluiceError(CALLER_INVALID_KEY) when it carries a bad one."""

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | None: ...
