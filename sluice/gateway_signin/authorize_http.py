"""The MCP authorization server's HTTP surface (sluice.gateway_signin.authcode):

    POST /oauth/register      RFC 7591 dynamic client registration (JSON in, 201 JSON out)
    GET  /authorize           checked, then -> the identity provider (auth.oidc) -> /authorize/consent
    GET  /authorize/consent   "Allow <client> to use this gateway's MCP tools as you?"
    POST /authorize/consent   -> the client's redirect URI with `code`, `state`, `iss`
    POST /authorize/deny      -> the client's redirect URI with `error=access_denied`

An unknown client or a redirect URI it did not register is answered on a page here, never by a
redirect (no open redirector); every other refusal goes back to the registered URI. A signed
cookie on /authorize binds the consent to the browser that started the request, and the consent
is a same-origin POST (a page elsewhere cannot allow a client on a signed-in person's behalf).
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sluice.audit.auth_failures import AuthGuard
from sluice.auth.identity import Identity
from sluice.auth.session import LOGIN_COOKIE, Signer, cookie_value, set_cookie
from sluice.core.errors import SluiceError
from sluice.gateway_signin.authcode import MAX_REGISTRATION, AuthorizeRequest, CodeFlow, NoRedirect
from sluice.gateway_signin.http import (
    CODE_SURFACE,
    NO_STORE,
    PAGE_HEADERS,
    json_answer,
    oauth_error,
    page,
    retry_after,
    same_origin,
)
from sluice.gateway_signin.service import OAuthError

AUTHORIZE_COOKIE = "sluice_authorize"
_PURPOSE = "mcp-authorize"
_TTL_S = 600
# The request's own parameters, kept in the cookie and checked again at consent.
_KEPT = ("client_id", "redirect_uri", "response_type", "code_challenge", "code_challenge_method", "state", "resource")


def authorize_routes(codes: CodeFlow, identity: Identity, signer: Signer, guard: AuthGuard | None) -> list[Route]:
    """`guard`: the authentication failures' throttle; /authorize counts an unknown client or
    redirect URI against the address, and refuses an address that failed too often (429)."""
    signin = codes.signin
    secure = identity.sessions.config.secure_cookie

    def address(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def back(req: AuthorizeRequest, **params: str) -> Response:
        return RedirectResponse(codes.back_to(req.redirect_uri, req.state, **params), 303, NO_STORE)

    def clear(response: Response) -> Response:
        response.headers.append(
            "set-cookie", set_cookie(AUTHORIZE_COOKIE, "", max_age=0, secure=secure, path="/authorize")
        )
        return response

    async def checked(query: dict[str, str], repeated: bool, counted: str | None = None) -> AuthorizeRequest | Response:
        """`counted`: the address an unknown client or redirect URI counts against (the guard)."""
        try:
            req = await codes.check(query)
        except NoRedirect as err:
            if counted is not None and guard is not None:
                await guard.failed(CODE_SURFACE, counted, err.reason)
            return page("Sign-in stopped", f"<p>{html.escape(str(err))}</p>", 400)
        except OAuthError as err:
            redirect_uri, state = query["redirect_uri"], query.get("state")
            extra = {"error_description": err.description} if err.description else {}
            target = codes.back_to(redirect_uri, state, error=err.error, **extra)
            return RedirectResponse(target, 303, NO_STORE)
        if repeated:  # RFC 6749 3.1: a parameter sent twice is an invalid request
            return back(req, error="invalid_request", error_description="A parameter was repeated.")
        return req

    async def register(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return oauth_error(OAuthError("invalid_client_metadata", description="Send application/json."))
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_REGISTRATION:
                return oauth_error(OAuthError("invalid_client_metadata", 413, "The registration is too large."))
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return oauth_error(OAuthError("invalid_client_metadata", description="The body is not JSON."))
        try:
            return json_answer(await codes.register(doc, address(request)), 201)
        except OAuthError as err:
            return oauth_error(err)

    async def authorize(request: Request) -> Response:
        items = request.query_params.multi_items()
        query = {k: v for k, v in items[::-1] if k in _KEPT}
        where = address(request)
        if guard is not None:
            try:
                await guard.check(CODE_SURFACE, where)
            except SluiceError as err:
                # Before the client is known, so on a page here (no redirect to an unchecked URI).
                return retry_after(page("Sign-in stopped", f"<p>{html.escape(err.message)}</p>", 429), err)
        req = await checked(query, len({k for k, _ in items}) != len(items), where)
        if isinstance(req, Response):
            return req
        if identity.login is None:
            return page("Sign-in unavailable", "<p>Single sign-on is not configured (auth.oidc).</p>", 404)
        url, login_cookie = await identity.login.begin("/authorize/consent")
        response = RedirectResponse(url, 303, NO_STORE)
        kept = signer.sign(_PURPOSE, {"q": query}, _TTL_S)
        response.headers.append(
            "set-cookie", set_cookie(AUTHORIZE_COOKIE, kept, max_age=_TTL_S, secure=secure, path="/authorize")
        )
        response.headers.append(
            "set-cookie", set_cookie(LOGIN_COOKIE, login_cookie, max_age=600, secure=secure, path="/auth")
        )
        return response

    async def started_here(request: Request) -> AuthorizeRequest | Response:
        raw = cookie_value(request.headers, AUTHORIZE_COOKIE)
        data = signer.verify(_PURPOSE, raw) if raw else None
        query = data.get("q") if data else None
        if not isinstance(query, dict) or not all(isinstance(v, str) for v in query.values()):
            return page(
                "Sign in your agent", "<p>Start again from your agent: this sign-in was not started here.</p>", 400
            )
        return await checked(query, False)  # the client may have gone since: judged again

    async def consent_page(request: Request) -> Response:
        req = await started_here(request)
        if isinstance(req, Response):
            return req
        principal = await identity.sessions.authenticate(request.headers)
        if principal is None or principal.user_id is None:
            return page("Sign in your agent", "<p>Start again from your agent: you are not signed in.</p>", 400)
        who = html.escape(principal.email or principal.name or principal.user_id)
        target = urlsplit(req.redirect_uri)
        body = f"""<p>Signed in as <b>{who}</b>.</p>
<p><b>{html.escape(req.client.client_name)}</b> asks to use this gateway's MCP tools
(<code>{html.escape(req.resource)}</code>) as you, with your access profile's tools and limits.
It returns to <code>{html.escape(target.netloc)}</code>.
<strong>Allow it only if you started this from your agent.</strong></p>
<form method="post" action="/authorize/consent"><button type="submit">Allow</button>
<button type="submit" formaction="/authorize/deny">Deny</button></form>"""
        response = page("Allow access to MCP tools", body)
        # The allowed POST redirects to the client's own listener: form-action covers redirects too.
        origin = f"{target.scheme}://{target.netloc}"
        response.headers["content-security-policy"] = PAGE_HEADERS["content-security-policy"].replace(
            "form-action 'self'", f"form-action 'self' {origin}"
        )
        return response

    async def decided(request: Request, allow: bool) -> Response:
        if not same_origin(request, signin.base):
            return page("Blocked", "<p>This request came from another site. Start again from your agent.</p>", 403)
        req = await started_here(request)
        if isinstance(req, Response):
            return req
        if not allow:
            return clear(back(req, error="access_denied"))
        principal = await identity.sessions.authenticate(request.headers)
        if principal is None or principal.user_id is None:
            return page("Sign in your agent", "<p>Start again from your agent: you are not signed in.</p>", 400)
        try:
            code = await codes.issue_code(req, principal.user_id, principal.actor)
        except SluiceError as err:
            return clear(back(req, error="access_denied", error_description=err.message))
        return clear(back(req, code=code))

    async def allow(request: Request) -> Response:
        return await decided(request, True)

    async def deny(request: Request) -> Response:
        return await decided(request, False)

    return [
        Route("/oauth/register", register, methods=["POST"]),
        Route("/authorize", authorize, methods=["GET"]),
        Route("/authorize/consent", consent_page, methods=["GET"]),
        Route("/authorize/consent", allow, methods=["POST"]),
        Route("/authorize/deny", deny, methods=["POST"]),
    ]


ROUTES = [
    ("POST", "/oauth/register"),
    ("GET", "/authorize"),
    ("GET", "/authorize/consent"),
    ("POST", "/authorize/consent"),
    ("POST", "/authorize/deny"),
]
