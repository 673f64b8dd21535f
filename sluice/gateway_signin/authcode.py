"""The authorization server for /mcp, as the MCP authorization specification (2025-06-18,
2025-11-25) has an MCP client run it: RFC 7591 dynamic registration of a public client, then
OAuth 2.1 authorization code with PKCE (S256 only) and an RFC 8707 `resource` naming /mcp.

Seen from the real Claude Code 2.1.332 (tests/fixtures/claude_gateway/mcp_oauth.json): it registers
`{"client_name": "Claude Code (<server>)", "redirect_uris": ["http://localhost:<port>/callback"],
"grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
"token_endpoint_auth_method": "none", "application_type": "native"}` and then opens
`/authorize?response_type=code&client_id&code_challenge&code_challenge_method=S256&redirect_uri&state
&resource=<base>/mcp`.

The person signs in through auth.oidc as on /device; the code is then a gateway grant (one row in
gateway_grants) bound to its client, redirect URI, challenge and resource, and redeemed once by
compare-and-set into the same access/refresh tokens a device sign-in gets, with `aud` the resource.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from sluice.gateway_signin.service import GatewaySignin, OAuthError, Store, Tokens, digest
from sluice.storage.grants import GatewayGrant, OAuthClient

MAX_REGISTRATION = 8 * 1024  # bytes of the registration document (Claude Code's is ~230)
MAX_REDIRECT_URIS = 5
MAX_URI = 512
MAX_NAME = 200
MAX_STATE = 1024
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
# RFC 7636 4.2: base64url(sha256(verifier)) without padding is exactly 43 characters; 4.1: the
# verifier is 43-128 unreserved characters.
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_URI_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space; a backslash is refused on its own
_HOUR = 3600.0


def redirect_allowed(uri: str) -> bool:
    """The MCP specification's rule (Communication Security: "All redirect URIs MUST be either
    localhost or use HTTPS"): http only to a loopback host (RFC 8252 7.3, the CLI's own listener),
    else https; no fragment (RFC 6749 3.1.2), no user info, nothing a browser reads differently."""
    if len(uri) > MAX_URI or not _URI_CHARS.fullmatch(uri) or "\\" in uri or "#" in uri:
        return False
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises on a port that is not a number in range
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return False
    host = parts.hostname or ""
    if parts.scheme == "https":
        return bool(host)
    return parts.scheme == "http" and host in LOOPBACK


def canonical_resource(uri: str) -> str:
    """RFC 8707 2 / the MCP specification's canonical URI: scheme and host compared without case, no
    trailing slash. A fragment or a query makes it another resource (never equal)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return ""
    if parts.fragment or parts.query or "#" in uri:
        return ""
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _clean_name(value: object) -> str:
    if not isinstance(value, str):
        return "MCP client"
    text = "".join(c for c in value if unicodedata.category(c)[0] != "C").strip()
    return text[:MAX_NAME] or "MCP client"


@dataclass(frozen=True, slots=True)
class AuthorizeRequest:
    client: OAuthClient
    redirect_uri: str
    code_challenge: str
    state: str | None
    resource: str


class NoRedirect(Exception):
    """An authorization request whose client or redirect URI is not known: answered on a page of
    ours, never by redirecting to the URI given (RFC 6749 4.1.2.1: no open redirector). `reason`:
    the failure's name in the audit log (sluice.audit.auth_failures)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class CodeFlow:
    def __init__(self, signin: GatewaySignin, store: Store) -> None:
        self.signin = signin
        self._store = store
        self.config = signin.config

    # -- RFC 7591 registration -----------------------------------------------------------------
    async def register(self, doc: object, address: str) -> dict[str, Any]:
        """The registration answer (RFC 7591 3.2.1); refusals raise OAuthError. Unknown metadata is
        ignored (2: "MUST ignore any client metadata ... that it does not understand")."""
        if not isinstance(doc, dict):
            raise OAuthError("invalid_client_metadata", description="The body must be a JSON object.")
        uris = doc.get("redirect_uris")
        if (
            not isinstance(uris, list)
            or not 1 <= len(uris) <= MAX_REDIRECT_URIS
            or not all(isinstance(u, str) and redirect_allowed(u) for u in uris)
        ):
            raise OAuthError(
                "invalid_redirect_uri",
                description=f"1 to {MAX_REDIRECT_URIS} redirect URIs, each https:// or http:// to 127.0.0.1/localhost.",
            )
        method = doc.get("token_endpoint_auth_method", "none")
        grants = doc.get("grant_types", ["authorization_code"])
        responses = doc.get("response_types", ["code"])
        if method != "none":
            raise OAuthError(
                "invalid_client_metadata", description="Only public clients (token_endpoint_auth_method none)."
            )
        if not isinstance(grants, list) or not grants or not set(grants) <= GRANT_TYPES:
            raise OAuthError("invalid_client_metadata", description="grant_types: authorization_code, refresh_token.")
        if not isinstance(responses, list) or not responses or set(responses) != {"code"}:
            raise OAuthError("invalid_client_metadata", description="response_types: code.")
        now = self.signin.now()
        client = OAuthClient(
            client_id="mcp_" + secrets.token_urlsafe(24),
            client_name=_clean_name(doc.get("client_name")),
            redirect_uris=tuple(dict.fromkeys(uris)),
            created_at=now,
            address=address[:64],
        )
        stored = await self._store.create_client(
            client,
            most=self.config.clients_max,
            most_from_address=self.config.registrations_per_hour,
            since=now - _HOUR,
        )
        if not stored:
            raise OAuthError("temporarily_unavailable", 429, "Too many client registrations; try again later.")
        return {
            "client_id": client.client_id,
            "client_id_issued_at": int(now),
            "client_name": client.client_name,
            "redirect_uris": list(client.redirect_uris),
            "grant_types": sorted(set(grants)),
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }

    # -- the authorization endpoint ------------------------------------------------------------
    async def check(self, query: dict[str, str]) -> AuthorizeRequest:
        """The request, checked; raises NoRedirect for an unknown client or redirect URI, and
        OAuthError (to be sent to the redirect URI) for the rest."""
        client_id = query.get("client_id", "")
        client = await self._store.client_by_id(client_id) if 0 < len(client_id) <= 64 else None
        redirect_uri = query.get("redirect_uri", "")
        if client is None:
            raise NoRedirect("This application is not registered here. Start again from your agent.", "unknown_client")
        if redirect_uri not in client.redirect_uris:  # exact match (MCP spec, Open Redirection)
            raise NoRedirect(
                "This application's return address is not the one it registered.", "unregistered_redirect_uri"
            )
        if query.get("response_type") != "code":
            raise OAuthError("unsupported_response_type")
        challenge = query.get("code_challenge", "")
        if query.get("code_challenge_method") != "S256" or not CHALLENGE.fullmatch(challenge):
            # OAuth 2.1 4.1.1: PKCE is required; a missing method means "plain", refused like plain.
            raise OAuthError("invalid_request", description="PKCE with code_challenge_method S256 is required.")
        state = query.get("state")
        if state is not None and len(state) > MAX_STATE:
            raise OAuthError("invalid_request", description="state is too long.")
        resource = canonical_resource(query.get("resource", ""))
        if resource != self.signin.mcp_resource:
            # RFC 8707 2: the one resource this server issues codes for is /mcp.
            raise OAuthError("invalid_target", description=f"resource must be {self.signin.mcp_resource}.")
        return AuthorizeRequest(client, redirect_uri, challenge, state, resource)

    def back_to(self, request_uri: str, state: str | None, **params: str) -> str:
        """The redirect to the client: its parameters, the state it sent and this issuer (RFC 9207)."""
        query = params | ({"state": state} if state is not None else {}) | {"iss": self.signin.base}
        return f"{request_uri}{'&' if '?' in request_uri else '?'}{urlencode(query)}"

    async def issue_code(self, req: AuthorizeRequest, user_id: str, actor: str) -> str:
        """The signed-in person allowed the client: a code for their key, valid `code_ttl_s`."""
        key = await self.signin.person_key(user_id, actor)
        now = self.signin.now()
        code = secrets.token_urlsafe(32)
        grant = GatewayGrant(
            id=secrets.token_hex(16),
            device_hash=digest(code),
            user_code=f"C-{secrets.token_hex(6)}",  # never a typed code: not of the user-code alphabet
            status="approved",
            created_at=now,
            expires_at=now + self.config.code_ttl_s,
            surface=req.client.client_name[:64],
            user_id=user_id,
            key_id=key.id,
            client_id=req.client.client_id,
            redirect_uri=req.redirect_uri,
            code_challenge=req.code_challenge,
            resource=req.resource,
        )
        await self._store.create_grant(grant)
        await self.signin.record(
            "gateway_signin",
            actor,
            {"user": user_id, "virtual_key": key.id, "surface": grant.surface, "client": req.client.client_id},
        )
        return code

    # -- the token endpoint: grant_type=authorization_code ------------------------------------
    async def exchange(self, fields: dict[str, str]) -> Tokens:
        now = self.signin.now()
        code = fields.get("code", "")
        grant = await self._store.grant_by("device_hash", digest(code)) if code else None
        if grant is None or grant.code_challenge is None:  # a device code is no authorization code
            raise OAuthError("invalid_grant", description="Unknown authorization code.")
        if grant.status in ("active", "revoked"):
            # OAuth 2.1 4.1.3: a code used twice is stolen or replayed; end what it gave.
            if grant.status == "active":
                await self._store.swap_grant(grant, replace(grant, status="revoked", revoked_at=now))
                await self.signin.record(
                    "gateway_code_reuse", "gateway-signin", {"user": grant.user_id, "grant": grant.id}
                )
            raise OAuthError("invalid_grant", description="This authorization code was used already.")
        verifier = fields.get("code_verifier", "")
        resource = fields.get("resource")
        bound = (
            grant.status == "approved"
            and grant.expires_at > now
            and hmac.compare_digest(fields.get("client_id", ""), grant.client_id or "")
            and fields.get("redirect_uri", "") == grant.redirect_uri
            and VERIFIER.fullmatch(verifier) is not None
            and hmac.compare_digest(s256(verifier), grant.code_challenge)
        )
        if not bound:
            # One try: a code presented with the wrong client, redirect or verifier is spent.
            await self._store.swap_grant(grant, replace(grant, status="revoked", revoked_at=now))
            raise OAuthError("invalid_grant", description="The code does not match this client, redirect or verifier.")
        if resource is not None and canonical_resource(resource) != grant.resource:
            await self._store.swap_grant(grant, replace(grant, status="revoked", revoked_at=now))
            raise OAuthError("invalid_target", description=f"resource must be {grant.resource}.")
        return await self.signin.activate(grant, now, "This authorization code was used already.")
