"""The console under /console: server-rendered pages (Jinja2) over the store, served by the
gateway itself, signed in with single sign-on or an admin token, authorised by the admin API's
rules and acting through its handlers. See docs/console.md."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from sluice.auth.principal import Authenticator
from sluice.http.admin import default_authenticators
from sluice.http.admin.framework import ApiError, AuthChain
from sluice.http.console import (
    audit_page,
    config_page,
    keys,
    mcp_page,
    me,
    overview,
    requests_page,
    sessions_page,
    stops_page,
    teams,
)
from sluice.http.console.session import ConsoleSession, form_value, same_origin
from sluice.http.console.web import PREFIX, SECURITY_HEADERS, Console, ConsoleEndpoint, ConsoleError, Page
from sluice.storage.backends.console_queries import ConsoleQueries

STATIC = {"console.css": "text/css", "tail.js": "text/javascript", "copy.js": "text/javascript"}


def console_endpoints() -> list[ConsoleEndpoint]:
    """Every signed-in console route with its RBAC action: one table for the routes, the
    navigation and the RBAC matrix test (tests/admin/test_rbac_matrix.py)."""
    P = PREFIX
    return [
        ConsoleEndpoint("GET", f"{P}/", "budgets.read", overview.overview, "Overview", listing=True),
        ConsoleEndpoint("GET", f"{P}/keys", "keys.read", keys.list_keys, "Developers and keys", listing=True),
        ConsoleEndpoint(
            "GET", f"{P}/keys/{{key_id}}", "keys.read", keys.key_detail, admin=("GET", "/api/keys/{key_id}")
        ),
        ConsoleEndpoint("POST", f"{P}/keys", "keys.create", keys.issue_key, admin=("POST", "/api/keys")),
        ConsoleEndpoint(
            "POST",
            f"{P}/keys/{{key_id}}/rotate",
            "keys.rotate",
            keys.rotate_key,
            admin=("POST", "/api/keys/{key_id}/rotate"),
        ),
        ConsoleEndpoint(
            "POST",
            f"{P}/keys/{{key_id}}/revoke",
            "keys.revoke",
            keys.revoke_key,
            admin=("POST", "/api/keys/{key_id}/revoke"),
        ),
        ConsoleEndpoint(
            "POST", f"{P}/keys/{{key_id}}/budgets", "budgets.write", keys.add_budget, admin=("POST", "/api/budgets")
        ),
        ConsoleEndpoint(
            "POST",
            f"{P}/budgets/{{budget_id}}",
            "budgets.write",
            keys.change_budget,
            admin=("PUT", "/api/budgets/{object_id}"),
        ),
        ConsoleEndpoint("GET", f"{P}/teams", "config.read", teams.teams, "Teams and customers"),
        ConsoleEndpoint("GET", f"{P}/requests", "requests.read", requests_page.request_log, "Requests"),
        ConsoleEndpoint("GET", f"{P}/requests/tail", "requests.read", requests_page.tail),
        ConsoleEndpoint("GET", f"{P}/requests/{{request_id}}", "requests.read", requests_page.request_detail),
        ConsoleEndpoint("GET", f"{P}/sessions", "spend.read", sessions_page.sessions, "Sessions", listing=True),
        ConsoleEndpoint(
            "GET",
            f"{P}/sessions/{{session_id}}",
            "spend.read",
            sessions_page.session_detail,
            admin=("GET", "/api/sessions/{session_id}"),
        ),
        ConsoleEndpoint("GET", f"{P}/stops", "stops.read", stops_page.stops, "Stops", listing=True),
        ConsoleEndpoint("POST", f"{P}/stops", "stops.write", stops_page.throw, admin=("POST", "/api/stops")),
        ConsoleEndpoint(
            "POST", f"{P}/stops/resume", "stops.write", stops_page.resume, admin=("POST", "/api/stops/resume")
        ),
        ConsoleEndpoint("GET", f"{P}/audit", "audit.read", audit_page.audit, "Audit"),
        ConsoleEndpoint("GET", f"{P}/mcp", "config.read", mcp_page.mcp, "MCP"),
        ConsoleEndpoint("GET", f"{P}/config", "config.read", config_page.configuration, "Configuration"),
        ConsoleEndpoint("POST", f"{P}/audit/verify", "audit.read", audit_page.verify_now),
        ConsoleEndpoint("GET", f"{P}/audit/export", "audit.read", audit_page.export),
        ConsoleEndpoint("GET", f"{P}/me", "me.read", me.my_usage, "My usage"),
    ]


def _secret(services: Any) -> bytes:
    configured = services.config.auth.session.secret
    if configured is not None:
        return hashlib.sha256(b"console:" + configured.get_secret_value().encode()).digest()
    return secrets.token_bytes(32)  # sign-ins with a token end when the process restarts


def _static() -> dict[str, bytes]:
    root = resources.files("sluice.http.console").joinpath("static")
    return {name: root.joinpath(name).read_bytes() for name in STATIC}


def build_console_app(services: Any, authenticators: Sequence[Authenticator] | None = None) -> Starlette:
    chain = AuthChain(
        authenticators if authenticators is not None else default_authenticators(services),
        getattr(services, "guard", None),
    )
    cfg = services.config.auth.session
    session = ConsoleSession(
        _secret(services), session_cookie=cfg.cookie_name, secure=cfg.secure_cookie, ttl_s=cfg.ttl_s
    )
    endpoints = console_endpoints()
    console = Console(services, chain, session, endpoints)
    engine = getattr(services.store, "engine", None)
    console.queries = (
        ConsoleQueries(engine, write_lock=getattr(services.store, "_write_lock", None)) if engine is not None else None
    )
    files = _static()

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            return Response("not found", 404, SECURITY_HEADERS, media_type="text/plain")
        headers = {**SECURITY_HEADERS, "cache-control": "public, max-age=3600"}
        return Response(files[name], 200, headers, media_type=STATIC[name])

    async def root(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", 308, SECURITY_HEADERS)

    async def sign_in_page(request: Request, message: str = "", status: int = 200) -> Response:
        cookie, token = session.pre_cookie()
        nxt = _next(request.query_params.get("next"))
        sso = services.identity.login is not None
        response = console.render(
            request, "sign_in.html", status, pre=token, next=nxt, sso=sso, message=message, principal=None
        )
        response.headers.append("set-cookie", cookie)
        return response

    async def sign_in(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        form = await request.form(max_files=0, max_fields=10)
        if not same_origin(headers, request.url.scheme) or not session.pre_token_ok(headers, form_value(form, "csrf")):
            return await sign_in_page(request, "The sign-in form expired or came from another site; try again.", 403)
        token = form_value(form, "token").strip()
        if not token or len(token) > 4096:
            return await sign_in_page(request, "Paste an admin token.", 400)
        address = request.client.host if request.client else "unknown"
        try:
            await chain.authenticate({"authorization": f"Bearer {token}"}, address)
        except ApiError as err:
            return await sign_in_page(request, err.message, 429 if err.status == 429 else 401)
        response = RedirectResponse(_next(form_value(form, "next")), 303, SECURITY_HEADERS)
        response.headers.append("set-cookie", session.token_cookie(token))
        return response

    async def sign_out(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        form = await request.form(max_files=0, max_fields=10)
        if not same_origin(headers, request.url.scheme) or not session.csrf_ok(headers, form_value(form, "csrf")):
            return console.error(request, ConsoleError(403, "CSRF check failed; reload the page and retry."))
        await services.identity.sessions.end(headers, "console")
        response = RedirectResponse(f"{PREFIX}/sign-in", 303, SECURITY_HEADERS)
        response.headers.append("set-cookie", session.clear_token_cookie())
        response.headers.append("set-cookie", services.identity.sessions.clear())
        return response

    routes = [
        Route(PREFIX, root, methods=["GET"]),
        Route(f"{PREFIX}/static/{{name}}", static, methods=["GET"]),
        Route(f"{PREFIX}/sign-in", sign_in_page, methods=["GET"]),
        Route(f"{PREFIX}/sign-in", sign_in, methods=["POST"]),
        Route(f"{PREFIX}/sign-out", sign_out, methods=["POST"]),
    ]
    routes += [Route(ep.path, console.wrap(ep), methods=[ep.method]) for ep in endpoints]
    app = Starlette(routes=routes)
    app.state.console = console
    return app


def _next(value: str | None) -> str:
    """Only a path of the console: never an open redirect to another site."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{PREFIX}/"


__all__ = ["PREFIX", "Page", "build_console_app", "console_endpoints"]
