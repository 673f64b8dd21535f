"""The console's plumbing: the page table, rendering with a strict Content-Security-Policy, the
signed-in principal of a request, and the bridge that runs an action through the admin API's own
endpoint handler (so RBAC, the team-lead rules and the use cases are the API's, not copies).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sluice.admin.declarative import DeclarationError
from sluice.admin.secrets import SecretError
from sluice.admin.service import Conflict, Invalid, NotFound
from sluice.auth.principal import ROLES, Principal
from sluice.auth.rbac import ACTIONS, Scope, decide, grant_of, widest_grant
from sluice.http.admin import admin_endpoints
from sluice.http.admin.framework import ApiError, AuthChain, Call, Endpoint
from sluice.http.console.session import ConsoleSession, form_value, same_origin
from sluice.storage.backends.console_queries import KeyVisibility

log = logging.getLogger("sluice.console")
PREFIX = "/console"
# No inline script or style anywhere; SVG charts use presentation attributes only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
PICO = Decimal(10**12)


class ConsoleError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Page:
    """One request to a signed-in console page."""

    request: Request
    principal: Principal
    console: Console
    form: dict[str, str] = field(default_factory=dict)

    @property
    def services(self) -> Any:
        return self.console.services

    def allowed(self, action: str, scope: Scope = Scope()) -> bool:
        return decide(self.principal, action, scope).allowed

    def authorize(self, action: str, scope: Scope = Scope()) -> None:
        decision = decide(self.principal, action, scope)
        if not decision.allowed:
            raise ConsoleError(403, f"Not allowed: {decision.reason}.")

    def grant(self, action: str) -> str:
        return widest_grant(self.principal, action)

    def key_visibility(self, action: str) -> KeyVisibility:
        """The keys `action` lets the caller see, as a store filter (the union over their roles)."""
        grants = {grant_of(r, action) for r in self.principal.roles if r in ROLES and action in ACTIONS}
        if "all" in grants:
            return KeyVisibility(everything=True)
        return KeyVisibility(
            teams=tuple(sorted(self.principal.teams)) if "team" in grants else (),
            user_id=self.principal.user_id if "self" in grants else None,
        )

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        return self.console.render(self.request, template, status, principal=self.principal, **values)

    async def admin(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        """Runs the admin API's handler of `method path` as this principal."""
        ep = self.console.admin_index[method, path]
        call = Call(self.principal, ep.action, params, None, None, self.services)
        try:
            if ep.query is not None:
                call.query = ep.query.model_validate(query or {})
            if ep.body is not None:
                call.body = ep.body.model_validate(body or {})
            return await ep.handler(call)
        except ApiError as err:
            raise ConsoleError(err.status, err.message) from None
        except NotFound as exc:
            raise ConsoleError(404, str(exc)) from None
        except Conflict as exc:
            raise ConsoleError(409, str(exc)) from None
        except (SecretError, DeclarationError, Invalid, ValueError) as exc:
            if isinstance(exc, ValidationError):
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ConsoleError(422, f"{where}: {first['msg']}") from None
            raise ConsoleError(422, str(exc)) from None

    def redirect(self, path: str) -> Response:
        return RedirectResponse(path, 303, SECURITY_HEADERS)


Handler = Callable[[Page], Awaitable[Response]]


@dataclass(frozen=True)
class ConsoleEndpoint:
    """A console route and the RBAC action it needs; `admin` names the admin API endpoint a form
    runs (the same handler, hence the same rule). The RBAC matrix test reads this table."""

    method: str
    path: str
    action: str
    handler: Handler
    title: str = ""
    admin: tuple[str, str] | None = None
    listing: bool = False  # filters what it shows by the grant instead of refusing


def _money(pico: Any) -> str:
    value = Decimal(int(pico or 0)) / PICO
    return f"${value:,.2f}" if value >= Decimal("0.01") or value == 0 else f"${value:.6f}"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("sluice.http.console", "templates"),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["when"] = _when
    env.filters["dollars"] = lambda d: f"${Decimal(str(d)):,.2f}"
    return env


class Console:
    def __init__(self, services: Any, chain: AuthChain, session: ConsoleSession, endpoints: list[ConsoleEndpoint]):
        self.services = services
        self.chain = chain
        self.session = session
        self.endpoints = endpoints
        self.env = environment()
        self.admin_index: dict[tuple[str, str], Endpoint] = {(e.method, e.path): e for e in admin_endpoints()}
        self.queries: Any = None  # set by the app builder (None: the store is not SQL)

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        principal: Principal | None = values.get("principal")
        nav = [e for e in self.endpoints if e.title and principal is not None and _visible(principal, e)]
        body = self.env.get_template(template).render(
            csrf=self.session.csrf_token(headers),
            nav=nav,
            path=request.url.path,
            prefix=PREFIX,
            **values,
        )
        return HTMLResponse(body, status, SECURITY_HEADERS)

    async def principal(self, request: Request) -> Principal | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        sent = self.session.credential_headers(headers)
        if sent is None:
            return None
        address = request.client.host if request.client else "unknown"
        try:
            return await self.chain.authenticate(sent, address)
        except ApiError as err:
            if err.status == 429:
                raise ConsoleError(429, err.message) from None
            return None

    def wrap(self, ep: ConsoleEndpoint) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                principal = await self.principal(request)
                if principal is None:
                    response: Response
                    if request.method == "GET" and "text/event-stream" not in request.headers.get("accept", ""):
                        response = RedirectResponse(f"{PREFIX}/sign-in?next={request.url.path}", 303, SECURITY_HEADERS)
                    else:
                        response = self.error(request, ConsoleError(401, "Sign in first."))
                    # A token that no longer signs in (revoked, rotated) is dropped, so it is not
                    # presented again on every page and counted as a failed sign-in each time.
                    if self.session.token_of({k.lower(): v for k, v in request.headers.items()}) is not None:
                        response.headers.append("set-cookie", self.session.clear_token_cookie())
                    return response
                page = Page(request, principal, self)
                if request.method == "POST":
                    await self.check_csrf(request, page)
                if not ep.listing and ep.admin is None:
                    page.authorize(ep.action)
                elif ep.listing and page.grant(ep.action) == "none":
                    page.authorize(ep.action)  # raises with the reason
                return await ep.handler(page)
            except ConsoleError as err:
                return self.error(request, err)
            except Exception:
                log.exception("console %s %s failed", request.method, request.url.path)
                return self.error(request, ConsoleError(500, "The console failed; the error is in the gateway's log."))

        return run

    async def check_csrf(self, request: Request, page: Page) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        form = await request.form(max_files=0, max_fields=100)
        page.form = {k: form_value(form, k) for k in form}
        if not same_origin(headers, request.url.scheme) or not self.session.csrf_ok(headers, page.form.get("csrf", "")):
            raise ConsoleError(403, "This form did not come from the console (CSRF check failed); reload it and retry.")

    def error(self, request: Request, err: ConsoleError) -> Response:
        if "text/event-stream" in request.headers.get("accept", ""):
            return Response(err.message, err.status, SECURITY_HEADERS, media_type="text/plain")
        return self.render(request, "error.html", err.status, code=err.status, message=err.message)


def _visible(principal: Principal, ep: ConsoleEndpoint) -> bool:
    return widest_grant(principal, ep.action) != "none"
