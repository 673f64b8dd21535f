"""The `auth` section: sign-in (OpenID Connect), sessions and SCIM."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from sluice.settings.base import _Strict

AdminRole = Literal["admin", "security-auditor", "team-lead", "developer", "viewer"]


class OidcConfig(_Strict):
    """Admin and developer sign-in with an OpenID Connect provider (docs/sso-scim.md)."""

    issuer: str = Field(min_length=1)  # exactly as the provider's discovery document states it
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None  # none: a public client, PKCE alone
    # How the secret goes to the token endpoint (RFC 6749 2.3.1: basic is what every server takes).
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    redirect_uri: str = Field(min_length=1)  # https://<gateway>/auth/callback, registered at the IdP
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    # Accepted `aud` of Bearer access tokens on the API, besides client_id (Okta's custom
    # authorization server: api://default; Entra: api://<application id>).
    audiences: list[str] = Field(default_factory=list)
    # Where the claims are; dotted paths reach into objects (Keycloak: realm_access.roles).
    groups_claim: str = "groups"
    email_claim: str = "email"
    username_claim: str = "email"  # matched to a SCIM user's userName (Entra: preferred_username)
    name_claim: str = "name"
    role_mapping: dict[str, list[AdminRole]] = Field(default_factory=dict)  # group -> roles
    default_roles: list[AdminRole] = Field(default_factory=list)  # everyone who signs in
    # group -> ids of the teams its members lead (a team-lead manages those teams' keys, budgets
    # and spend); matched like role_mapping, against the token's groups and SCIM groups.
    team_mapping: dict[str, list[str]] = Field(default_factory=dict)
    clock_skew_s: int = Field(default=60, ge=0, le=600)
    # An unknown `kid` refetches the JWKS (key rotation), at most this often.
    jwks_refetch_min_s: float = Field(default=30.0, ge=0)
    jwks_ttl_s: float = Field(default=3600.0, gt=0)
    jit_provisioning: bool = True  # first sign-in creates the user when SCIM has not
    # Linking a not-yet-linked user by the email claim needs the provider's `email_verified: true`
    # (else anyone who can set an address at the IdP could take over that person's account).
    require_verified_email: bool = True
    allowed_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
    )


class SessionConfig(_Strict):
    # Signs the session cookie; unset, a random one per process (sessions end with a restart).
    secret: SecretStr | None = None
    ttl_s: int = Field(default=8 * 3600, gt=0)
    cookie_name: str = "sluice_session"
    secure_cookie: bool = True  # false only for plain-HTTP development on 127.0.0.1


class ScimConfig(_Strict):
    # sha256 hex digests of the SCIM bearer tokens (several while rotating); the tokens themselves
    # stay in the IdP.
    token_sha256: list[str] = Field(min_length=1)

    @field_validator("token_sha256")
    @classmethod
    def _hex(cls, values: list[str]) -> list[str]:
        for v in values:
            if not re.fullmatch(r"[0-9a-f]{64}", v):
                raise ValueError("each token_sha256 is the 64-character lowercase hex sha256 of a token")
        return values


class AuthGuardConfig(_Strict):
    """What an unauthenticated caller may cost the gateway, on every surface (docs/security.md)."""

    # Failed authentications per client address: a token bucket of `failures_burst` refilled at
    # `failures_per_minute`; once empty, the address gets 429 with Retry-After before any check.
    throttle: bool = True
    failures_burst: int = Field(default=30, ge=1)
    failures_per_minute: float = Field(default=30.0, gt=0)
    # Repeats of one (surface, address, reason) are counted and written once per interval.
    audit_interval_s: float = Field(default=60.0, gt=0)
    tracked_addresses: int = Field(default=10_000, ge=1)
    # How much body an inference request may send before its key is checked and refused.
    unauthenticated_body_bytes: int = Field(default=64 * 1024, ge=0)
    # Request headers, all together and each one (name and value): beyond either, 431.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_header_line_bytes: int = Field(default=16 * 1024, ge=256)


class GatewaySigninConfig(_Strict):
    """Agents (Claude Code's /login "Cloud gateway") sign people in through `auth.oidc` with the
    device flow and get short-lived tokens for their own key (docs/design/claude-gateway-protocol.md)."""

    # The externally visible origin (https://sluice.corp.example.com): the issuer and the browser
    # page's address, never derived from the client-controlled Host header.
    public_url: str = Field(min_length=1, pattern=r"^https?://[^/?#]+$")
    access_ttl_s: int = Field(default=900, gt=0, le=24 * 3600)
    refresh_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    device_ttl_s: int = Field(default=600, gt=0, le=3600)
    interval_s: int = Field(default=5, ge=1, le=60)  # RFC 8628 3.2: the poll interval the client keeps
    login_notice: str | None = Field(default=None, max_length=500)  # shown beside the code in the client
    # The MCP authorization server (authorization code + PKCE, RFC 7591 registration) for /mcp:
    # a code lives a minute (OAuth 2.1 4.1.2: short); registrations are bounded in all and per address.
    code_ttl_s: int = Field(default=60, gt=0, le=600)
    clients_max: int = Field(default=10_000, gt=0)
    registrations_per_hour: int = Field(default=20, gt=0)  # from one address
    # How long a replica may answer a token from memory without reading its grant and key again
    # (0: read both on every request). A revocation on this replica applies at once, on another
    # within 0.25 s (the poll), and never later than this (sluice.gateway_signin.token_cache).
    token_cache_ttl_s: float = Field(default=5.0, ge=0, le=60)


class AuthConfig(_Strict):
    guard: AuthGuardConfig = Field(default_factory=AuthGuardConfig)
    oidc: OidcConfig | None = None
    session: SessionConfig = Field(default_factory=SessionConfig)
    scim: ScimConfig | None = None
    gateway_signin: GatewaySigninConfig | None = None
    # The access profile of people no profile's groups match (none: they get no key).
    default_profile: str | None = None

    @model_validator(mode="after")
    def _signin_needs_oidc(self) -> AuthConfig:
        if self.gateway_signin is not None and self.oidc is None:
            raise ValueError("auth.gateway_signin needs auth.oidc: people sign in through the identity provider")
        return self
