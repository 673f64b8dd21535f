"""The gateway sign-in's HTTP surface (docs/design/claude-gateway-protocol.md):

    GET  /.well-known/oauth-authorization-server  RFC 8414 metadata
    GET  /.well-known/oauth-protected-resource[/mcp]  RFC 9728 metadata (MCP authorization)
    POST /oauth/device_authorization              RFC 8628 3.1
    POST /oauth/token                             device_code and refresh_token grants
    POST /oauth/revoke                            RFC 7009
    GET  /device[?user_code=]                     the browser page: type or confirm the code
    POST /device                                  -> the identity provider (auth.oidc), via /auth/callback
    GET  /device/approve                          back from the provider: the code is approved
    POST /device/deny
    (and, with sluice.gateway_signin.authorize_http, the MCP authorization server's pages)

The OAuth endpoints answer in RFC 6749's error format and never redirect (the client follows no
redirect there). The browser pages take a POST only from this origin (a page elsewhere cannot
submit a code on a signed-in person's behalf) and count wrong codes against the address (RFC
8628 5.1: the user code is short, so guessing is throttled).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sluice.audit.auth_failures import AuthGuard
from sluice.auth.identity import Identity
from sluice.auth.session import LOGIN_COOKIE, Signer, cookie_value, set_cookie
from sluice.core.context import new_request_id
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat
from sluice.gateway_signin.authcode import CodeFlow
from sluice.gateway_signin.managed import document, matches
from sluice.gateway_signin.service import ACCESS_PREFIX, GatewaySignin, OAuthError, Tokens
from sluice.http.errors import error_body, error_headers, status_of
from sluice.storage.records import VirtualKey

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_COOKIE = "sluice_device"
_DEVICE_PURPOSE = "device-browser"
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache", "referrer-policy": "no-referrer"}
PAGE_HEADERS = {
    **NO_STORE,
    "x-frame-options": "DENY",  # the confirm button must not be clickjacked
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
}
GUARD_SURFACE = "device"
CODE_SURFACE = "mcp-authorize"  # /authorize and the authorization_code grant (sluice.gateway_signin.authcode)
PROTECTED_RESOURCE = "/.well-known/oauth-protected-resource"


def json_answer(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status, NO_STORE, media_type="application/json")


def oauth_error(err: OAuthError) -> Response:
    doc = {"error": err.error} | ({"error_description": err.description} if err.description else {})
    return json_answer(doc, err.status)


def throttled(err: SluiceError) -> OAuthError:
    """The guard's refusal of an address that failed too often, as an OAuth error: 429
    `temporarily_unavailable` (what registration answers when over its bound) with Retry-After."""
    return OAuthError("temporarily_unavailable", 429, err.message)


def retry_after(response: Response, err: SluiceError) -> Response:
    if err.retry_after is not None:
        response.headers["retry-after"] = str(max(1, round(err.retry_after)))
    return response


def _token_answer(tokens: Tokens) -> Response:
    return json_answer(
        {
            "access_token": tokens.access_token,
            "token_type": "Bearer",
            "expires_in": tokens.expires_in,
            "refresh_token": tokens.refresh_token,
        }
    )


def page(title: str, body: str, status: int = 200) -> Response:
    doc = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:10vh auto;padding:0 1em}}
input{{font:24px monospace;letter-spacing:.2em;text-transform:uppercase;width:100%;padding:.4em}}
button{{font:inherit;padding:.6em 1.2em;margin:.8em .4em 0 0}}</style></head>
<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"""
    return HTMLResponse(doc, status, PAGE_HEADERS)


def _code_form(code: str, message: str = "") -> str:
    note = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    return f"""{note}<p>Your agent (for example Claude Code's <code>/login</code>) shows a code. Enter it here, or check
that the one below matches it exactly. <strong>Continue only if you started this sign-in.</strong></p>
<form method="post" action="/device"><input name="user_code" value="{html.escape(code)}" autocomplete="off"
 required maxlength="12" aria-label="Code"><br><button type="submit">Continue</button>
<button type="submit" formaction="/device/deny">Deny</button></form>"""


def same_origin(request: Request, base: str) -> bool:
    """A form post from a page of ours: the browser's Origin (or, without one, its Sec-Fetch-Site)
    says so. Neither header can be set by a page on another site."""
    origin = request.headers.get("origin")
    # A page served with `Referrer-Policy: no-referrer` (ours are) makes the browser send
    # `Origin: null` even on a same-origin form post: then Sec-Fetch-Site decides, as without one.
    if origin is not None and origin != "null":
        want = urlsplit(base)
        got = urlsplit(origin)
        return (got.scheme, got.netloc) == (want.scheme, want.netloc)
    return request.headers.get("sec-fetch-site") == "same-origin"


def build_gateway_signin_app(
    signin: GatewaySignin,
    identity: Identity,
    signer: Signer,
    guard: AuthGuard | None,
    *,
    codes: CodeFlow | None = None,
    extra_routes: list[Route] | None = None,
    usage_of: Callable[[VirtualKey], Awaitable[dict[str, Any]]] | None = None,
) -> Starlette:
    """`codes` and `extra_routes` (sluice.gateway_signin.authorize_http): the MCP authorization
    server's authorization-code grant on the token endpoint, and its registration and browser pages."""
    secure = identity.sessions.config.secure_cookie

    def address(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def form(request: Request) -> dict[str, str]:
        # Only form fields, and only strings (a repeated field: its first value); unknown ones
        # are ignored (RFC 6749 3.2, RFC 8628 3.1).
        data = await request.form(max_files=0, max_fields=50)
        return {k: v for k, v in data.multi_items()[::-1] if isinstance(v, str)}

    async def metadata(request: Request) -> Response:
        return json_answer(signin.metadata())

    async def resource_metadata(request: Request) -> Response:
        # RFC 9728 3.1: the metadata of `{base}/mcp` lives at the well-known path + "/mcp".
        suffix = request.url.path.removeprefix(PROTECTED_RESOURCE)
        return json_answer(signin.resource_metadata(suffix))

    async def device_authorization(request: Request) -> Response:
        fields = await form(request)
        auth = await signin.authorize(fields.get("surface"))
        doc: dict[str, object] = {
            "device_code": auth.device_code,
            "user_code": auth.user_code,
            "verification_uri": f"{signin.base}/device",
            "verification_uri_complete": f"{signin.base}/device?user_code={auth.user_code}",
            "expires_in": auth.expires_in,
            "interval": auth.interval,
        }
        if signin.config.login_notice:
            doc["login_notice"] = signin.config.login_notice
        return json_answer(doc)

    async def code_exchange(where: str, codes: CodeFlow, fields: dict[str, str]) -> Response:
        """The authorization_code grant, guarded as the browser step is: an address that failed too
        often is refused before its code is looked at (the code stays unspent), and every refused
        code (unknown, replayed, or with the wrong client, redirect, verifier or resource) counts."""
        if guard is not None:
            try:
                await guard.check(CODE_SURFACE, where)
            except SluiceError as err:
                return retry_after(oauth_error(throttled(err)), err)
        try:
            return _token_answer(await codes.exchange(fields))
        except OAuthError:
            if guard is not None:
                await guard.failed(CODE_SURFACE, where, "invalid_authorization_code")
            raise

    async def token(request: Request) -> Response:
        fields = await form(request)
        grant_type = fields.get("grant_type", "")
        try:
            if grant_type == DEVICE_GRANT:
                return _token_answer(await signin.redeem(fields.get("device_code", "")))
            if grant_type == "refresh_token":
                return _token_answer(await signin.refresh(fields.get("refresh_token", "")))
            if grant_type == "authorization_code" and codes is not None:
                return await code_exchange(address(request), codes, fields)
        except OAuthError as err:
            return oauth_error(err)
        return oauth_error(OAuthError("unsupported_grant_type"))

    async def revoke(request: Request) -> Response:
        fields = await form(request)
        await signin.revoke(fields.get("token", ""))
        return Response(b"", 200, NO_STORE)

    async def code_page(code: str, message: str = "", status: int = 200) -> Response:
        response = page("Sign in your agent", _code_form(code, message), status)
        if identity.login is not None:
            # Continue posts here and is redirected to the provider: form-action covers redirects.
            try:
                provider = await identity.login.authorization_origin()
            except SluiceError:
                return response  # the provider is unreachable now: the post says so
            response.headers["content-security-policy"] = PAGE_HEADERS["content-security-policy"].replace(
                "form-action 'self'", f"form-action 'self' {provider}"
            )
        return response

    async def device_page(request: Request) -> Response:
        # Never auto-submits a code from the link (RFC 8628 5.4): the person confirms it.
        return await code_page(request.query_params.get("user_code", "")[:32])

    async def guarded(request: Request, step: Callable[[], Awaitable[Response]]) -> Response:
        if not same_origin(request, signin.base):
            return page("Blocked", "<p>This request came from another site. Open the link your agent shows.</p>", 403)
        try:
            if guard is not None:
                await guard.check(GUARD_SURFACE, address(request))
            return await step()
        except SluiceError as err:
            status = 429 if err.kind is ErrorKind.POLICY_RATE_LIMITED else 400
            return page("Sign-in stopped", f"<p>{html.escape(err.message)}</p>", status)

    async def device_submit(request: Request) -> Response:
        async def step() -> Response:
            fields = await form(request)
            grant = await signin.pending(fields.get("user_code", ""))
            if grant is None:
                if guard is not None:
                    await guard.failed(GUARD_SURFACE, address(request), "unknown_user_code")
                message = "That code is not valid or has expired. Check it against your agent."
                return await code_page("", message, 400)
            if identity.login is None:
                return page("Sign-in unavailable", "<p>Single sign-on is not configured (auth.oidc).</p>", 404)
            url, login_cookie = await identity.login.begin("/device/approve")
            response = RedirectResponse(url, 303, NO_STORE)
            device = signer.sign(_DEVICE_PURPOSE, {"gid": grant.id}, signin.config.device_ttl_s)
            response.headers.append(
                "set-cookie",
                set_cookie(DEVICE_COOKIE, device, max_age=signin.config.device_ttl_s, secure=secure, path="/device"),
            )
            response.headers.append(
                "set-cookie", set_cookie(LOGIN_COOKIE, login_cookie, max_age=600, secure=secure, path="/auth")
            )
            return response

        return await guarded(request, step)

    def started_here(request: Request) -> str | None:
        raw = cookie_value(request.headers, DEVICE_COOKIE)
        data = signer.verify(_DEVICE_PURPOSE, raw) if raw else None
        gid = data.get("gid") if data else None
        return gid if isinstance(gid, str) else None

    async def approve(request: Request) -> Response:
        gid = started_here(request)
        if gid is None:
            return await code_page("", "Start from the code your agent shows.", 400)
        principal = await identity.sessions.authenticate(request.headers)
        if principal is None or principal.user_id is None:
            return RedirectResponse("/device", 303, NO_STORE)
        try:
            key = await signin.approve(gid, principal.user_id, principal.actor)
        except SluiceError as err:
            return page("Sign-in stopped", f"<p>{html.escape(err.message)}</p>", 400)
        who = html.escape(principal.email or principal.name or principal.user_id)
        response = page(
            "You're signed in",
            f"<p>Signed in as <b>{who}</b> (key <code>{html.escape(key.id)}</code>). Return to your agent;"
            " it finishes on its own. You can close this page.</p>",
        )
        response.headers.append("set-cookie", set_cookie(DEVICE_COOKIE, "", max_age=0, secure=secure, path="/device"))
        return response

    async def deny(request: Request) -> Response:
        async def step() -> Response:
            fields = await form(request)
            grant = await signin.pending(fields.get("user_code", ""))
            if grant is not None:
                await signin.deny(grant.id)
            return page("Sign-in denied", "<p>The agent that asked was refused. You can close this page.</p>")

        return await guarded(request, step)

    async def bearer(request: Request) -> VirtualKey | Response:
        """The key of the request's gateway token, or the refusal in the Anthropic envelope (what
        the client reads on its bearer endpoints)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip().startswith(ACCESS_PREFIX):
                raise SluiceError(ErrorKind.CALLER_MISSING_KEY, "Sign in first: run /login.")
            if guard is not None:
                return await guard.screen("signin", address(request), lambda _: signin.key_for(token.strip()))
            return await signin.key_for(token.strip())
        except SluiceError as err:
            wire = WireFormat.ANTHROPIC_MESSAGES
            status = status_of(err, wire)
            refusal = error_body(err, wire, status, new_request_id())
            return Response(refusal, status, error_headers(err, wire), media_type="application/json")

    async def managed_settings(request: Request) -> Response:
        key = await bearer(request)
        if isinstance(key, Response):
            return key
        profile = signin.profile(key.profile_id)
        if profile is None or profile.managed_settings is None:
            return json_answer({"error": {"type": "not_found_error", "message": "No managed settings."}}, 404)
        doc, digest = document(profile.id, profile.managed_settings)
        # Revalidated on every poll (no-cache), never shared (private): the settings are the person's.
        headers = {"etag": f'"{digest}"', "cache-control": "private, no-cache"}
        if matches(request.headers.get("if-none-match"), digest):
            return Response(b"", 304, headers)
        return Response(orjson.dumps(doc), 200, headers, media_type="application/json")

    async def oauth_usage(request: Request) -> Response:
        """The person's own budgets in cents for the client's /usage (sluice.gateway_signin.usage);
        404 (the client then shows the headers' percent alone) without the limits to read."""
        key = await bearer(request)
        if isinstance(key, Response):
            return key
        if usage_of is None:
            missing = {"type": "not_found_error", "message": "No usage here."}
            return json_answer({"type": "error", "error": missing}, 404)
        return json_answer(await usage_of(key))

    return Starlette(
        routes=[
            Route("/managed/settings", managed_settings, methods=["GET"]),
            Route("/api/oauth/usage", oauth_usage, methods=["GET"]),
            Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
            Route(PROTECTED_RESOURCE, resource_metadata, methods=["GET"]),
            Route(PROTECTED_RESOURCE + "/mcp", resource_metadata, methods=["GET"]),
            Route("/oauth/device_authorization", device_authorization, methods=["POST"]),
            Route("/oauth/token", token, methods=["POST"]),
            Route("/oauth/revoke", revoke, methods=["POST"]),
            Route("/device", device_page, methods=["GET"]),
            Route("/device", device_submit, methods=["POST"]),
            Route("/device/approve", approve, methods=["GET"]),
            Route("/device/deny", deny, methods=["POST"]),
            *(extra_routes or []),
        ]
    )


# The exact (method, path) pairs the app serves, for SluiceASGI's route table.
ROUTES = [
    ("GET", "/managed/settings"),
    ("GET", "/api/oauth/usage"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", PROTECTED_RESOURCE),
    ("GET", PROTECTED_RESOURCE + "/mcp"),
    ("POST", "/oauth/device_authorization"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("GET", "/device"),
    ("POST", "/device"),
    ("GET", "/device/approve"),
    ("POST", "/device/deny"),
]
