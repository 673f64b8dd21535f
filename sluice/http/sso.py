"""`/auth`: OpenID Connect sign-in for admins and developers, and the self-service view of one's
own virtual key. Thin: the flow itself is sluice.auth.oidc.

    GET  /auth/login[?next=/path]  -> the identity provider
    GET  /auth/callback            -> session cookie; the virtual key's secret, the one time it is shown
    GET  /auth/me                  -> who you are, your roles and keys (session cookie or IdP Bearer token)
    POST /auth/me/key              -> a fresh secret for your key, shown once (header x-sluice-csrf: 1)
    POST /auth/logout
"""

from __future__ import annotations

import html

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from sluice.audit.auth_failures import AuthGuard
from sluice.auth.identity import Identity
from sluice.auth.principal import Principal
from sluice.auth.session import LOGIN_COOKIE, set_cookie
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat
from sluice.http.errors import error_headers, status_of

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache", "referrer-policy": "no-referrer"}


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status, NO_STORE, media_type="application/json")


def _error(exc: SluiceError) -> Response:
    response = _json(
        {"error": {"message": exc.message, "type": exc.kind.value.code}}, status_of(exc, WireFormat.OPENAI_CHAT)
    )
    response.headers.update(error_headers(exc, WireFormat.OPENAI_CHAT))
    return response


def _key_page(key_id: str, secret: str, next_path: str) -> str:
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Your Sluice key</title></head>
<body>
<h1>Your Sluice virtual key</h1>
<p>This is the only time it is shown. Store it now, e.g. as ANTHROPIC_API_KEY / OPENAI_API_KEY for your agent.</p>
<p>Key <b>{html.escape(key_id)}</b>: <code id="virtual-key">{html.escape(secret)}</code></p>
<p><a href="{html.escape(next_path)}">Continue</a></p>
</body></html>"""


def build_sso_app(identity: Identity, guard: AuthGuard | None = None) -> Starlette:
    sessions = identity.sessions

    async def login(request: Request) -> Response:
        if identity.login is None:
            return _json({"error": {"message": "Single sign-on is not configured (auth.oidc)."}}, 404)
        try:
            url, cookie = await identity.login.begin(request.query_params.get("next", "/auth/me"))
        except SluiceError as exc:
            return _error(exc)
        response = RedirectResponse(url, 302, NO_STORE)
        response.headers.append(
            "set-cookie",
            set_cookie(LOGIN_COOKIE, cookie, max_age=600, secure=sessions.config.secure_cookie, path="/auth"),
        )
        return response

    async def callback(request: Request) -> Response:
        if identity.login is None:
            return _json({"error": {"message": "Single sign-on is not configured (auth.oidc)."}}, 404)
        address = request.client.host if request.client else "unknown"
        try:
            if guard is not None:
                await guard.check("sign-in", address)
            done = await identity.login.finish(dict(request.query_params), request.headers)
        except SluiceError as exc:
            if guard is not None and exc.kind is not ErrorKind.POLICY_RATE_LIMITED:
                if not await guard.refused("sign-in", address, exc):
                    await guard.failed("sign-in", address, "sign_in_refused")
            return _error(exc)
        if done.secret is not None and done.key is not None:
            response: Response = HTMLResponse(_key_page(done.key.id, done.secret, done.next_path), 200, NO_STORE)
        else:
            response = RedirectResponse(done.next_path, 302, NO_STORE)
        response.headers.append("set-cookie", sessions.issue(done.principal, follow_groups=True))
        response.headers.append(
            "set-cookie", set_cookie(LOGIN_COOKIE, "", max_age=0, secure=sessions.config.secure_cookie, path="/auth")
        )
        return response

    async def who(request: Request) -> Principal | Response:
        try:
            principal = await identity.principal(request.headers)
        except SluiceError as exc:
            return _error(exc)
        if principal is None:
            return _json({"error": {"message": "Sign in first: GET /auth/login."}}, 401)
        return principal

    async def me(request: Request) -> Response:
        principal = await who(request)
        if isinstance(principal, Response):
            return principal
        keys = await identity.directory.keys_of(principal.user_id) if principal.user_id else []
        return _json(
            {
                "subject": principal.subject,
                "user_id": principal.user_id,
                "email": principal.email,
                "name": principal.name,
                "roles": sorted(principal.roles),
                "teams": sorted(principal.teams),
                "via": principal.via,
                "keys": [{"id": k.id, "hint": k.key_hint, "profile": k.profile_id} for k in keys],
            }
        )

    async def new_key(request: Request) -> Response:
        # A custom header cannot be sent cross-site without a CORS preflight we never grant, so
        # another site cannot make a signed-in browser reissue (and so break) the key.
        if request.headers.get("x-sluice-csrf") != "1":
            return _json({"error": {"message": "Send the header 'x-sluice-csrf: 1'."}}, 403)
        principal = await who(request)
        if isinstance(principal, Response):
            return principal
        # Only the key the directory allocated to this person: a key an operator attached to
        # them is the operator's to rotate (the admin API), not theirs to take over here.
        keys = await identity.directory.own_keys(principal.user_id) if principal.user_id else []
        if not keys:
            return _json(
                {"error": {"message": "You have no self-service virtual key; your groups map to no access profile."}},
                404,
            )
        secret = await identity.directory.new_secret(keys[0], principal.actor)
        return _json({"id": keys[0].id, "virtual_key": secret})

    async def logout(request: Request) -> Response:
        # Not only this browser's cookie: every session of the person ends, copies included.
        await sessions.end(request.headers)
        response = _json({"signed_out": True})
        response.headers.append("set-cookie", sessions.clear())
        return response

    return Starlette(
        routes=[
            Route("/auth/login", login, methods=["GET"]),
            Route("/auth/callback", callback, methods=["GET"]),
            Route("/auth/me", me, methods=["GET"]),
            Route("/auth/me/key", new_key, methods=["POST"]),
            Route("/auth/logout", logout, methods=["POST"]),
        ]
    )
