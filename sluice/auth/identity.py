"""Everything admin identity needs, built from the `auth` settings: the directory of people, the
OIDC sign-in and Bearer authenticator, sessions, and SCIM with its token."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from sluice.audit.log import AuditLog
from sluice.auth.directory import Directory
from sluice.auth.idp import Idp
from sluice.auth.oidc import OidcBearerAuthenticator, OidcLogin, roles_for, teams_for
from sluice.auth.principal import Authenticator, Principal
from sluice.auth.scim import ScimService
from sluice.auth.session import SessionAuthenticator, Signer
from sluice.auth.tokens import TokenVerifier
from sluice.core.errors import ErrorKind, SluiceError
from sluice.gateway_signin.authcode import CodeFlow
from sluice.gateway_signin.service import GatewaySignin
from sluice.governance.profiles import ProfileBook
from sluice.settings import AuthConfig, ScimConfig
from sluice.storage.ports import Store
from sluice.upstream.client import UpstreamClient

log = logging.getLogger("sluice.auth")


class ScimTokenAuthenticator:
    """The SCIM client's Bearer token, compared by its sha256 with the configured digests."""

    def __init__(self, config: ScimConfig) -> None:
        self._digests = list(config.token_sha256)

    async def authenticate(self, headers: Mapping[str, str]) -> Principal | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        if not any(hmac.compare_digest(digest, d) for d in self._digests):
            raise SluiceError(ErrorKind.CALLER_INVALID_KEY, "Invalid SCIM token.")
        return Principal(subject="scim", roles=frozenset(), via="scim")


@dataclass
class Identity:
    directory: Directory
    sessions: SessionAuthenticator
    login: OidcLogin | None = None
    bearer: OidcBearerAuthenticator | None = None
    scim: ScimService | None = None
    scim_auth: ScimTokenAuthenticator | None = None
    authenticators: list[Authenticator] = field(default_factory=list)  # for the admin API
    gateway: GatewaySignin | None = None  # agents' sign-in (auth.gateway_signin)
    codes: CodeFlow | None = None  # its authorization-code flow for /mcp (MCP authorization)
    signer: Signer | None = None

    async def principal(self, headers: Mapping[str, str]) -> Principal | None:
        """The first authenticator that recognises the request's credential decides."""
        for authenticator in self.authenticators:
            found = await authenticator.authenticate(headers)
            if found is not None:
                return found
        return None


def build_identity(
    config: AuthConfig,
    store: Store,
    client: UpstreamClient,
    profiles: ProfileBook,
    audit: AuditLog,
    keys_changed: Callable[[], Awaitable[None]],
) -> Identity:
    directory = Directory(store, profiles, audit, default_profile=config.default_profile, keys_changed=keys_changed)
    if config.session.secret is not None:
        secret = config.session.secret.get_secret_value().encode()
    else:
        secret = secrets.token_bytes(32)
        if config.oidc is not None:
            log.warning("auth.session.secret is not set: sessions end when this process restarts")
    signer = Signer(secret)
    oidc = config.oidc
    role_map = (lambda groups: (roles_for(oidc, groups), teams_for(oidc, groups))) if oidc is not None else None
    sessions = SessionAuthenticator(config.session, signer, directory, role_map)
    identity = Identity(directory, sessions, signer=signer)
    if config.oidc is not None:
        idp = Idp(config.oidc, client)
        verifier = TokenVerifier(idp)
        identity.login = OidcLogin(config.oidc, idp, verifier, directory, signer)
        identity.bearer = OidcBearerAuthenticator(config.oidc, verifier, directory)
        identity.authenticators.append(identity.bearer)
    identity.authenticators.append(sessions)
    if config.gateway_signin is not None:
        identity.gateway = GatewaySignin(config.gateway_signin, store, directory, signer, profiles)
        identity.codes = CodeFlow(identity.gateway, store)
    if config.scim is not None:
        identity.scim = ScimService(directory)
        identity.scim_auth = ScimTokenAuthenticator(config.scim)
    return identity
