"""The admin API under /api, served by Starlette (the inference routes stay bare ASGI)."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluice.auth.admin_tokens import ApiTokenAuthenticator, BootstrapAuthenticator
from sluice.auth.principal import Authenticator
from sluice.http.admin.data import data_endpoints
from sluice.http.admin.framework import ApiError, AuthChain, Endpoint, endpoint_app, error_response, json_response
from sluice.http.admin.keys import key_endpoints
from sluice.http.admin.objects import all_object_endpoints
from sluice.http.admin.openapi import openapi_document
from sluice.http.admin.policy import policy_endpoints
from sluice.http.admin.sessions import session_endpoints
from sluice.http.admin.stops import stop_endpoints
from sluice.http.admin.users import user_endpoints

PREFIX = "/api"


def admin_endpoints() -> list[Endpoint]:
    """Every admin endpoint: the one table the routes, the OpenAPI document and the RBAC test read."""
    return [
        *data_endpoints(),
        *session_endpoints(),
        *key_endpoints(),
        *user_endpoints(),
        *all_object_endpoints(),
        *stop_endpoints(),
        *policy_endpoints(),
    ]


def default_authenticators(services: Any) -> list[Authenticator]:
    """The services' chain (identity providers add theirs there), else the bootstrap token and
    admin API tokens."""
    chain = getattr(services, "authenticators", None)
    if chain:
        return list(chain)
    return [BootstrapAuthenticator(services.store), ApiTokenAuthenticator(services.store)]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"No admin endpoint {request.method} {request.url.path}." if exc.status_code == 404 else str(exc.detail)
    response = error_response(ApiError(exc.status_code, kind, message))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def build_admin_app(services: Any, authenticators: Sequence[Authenticator] | None = None) -> Starlette:
    endpoints = admin_endpoints()
    chain = AuthChain(
        authenticators if authenticators is not None else default_authenticators(services),
        getattr(services, "guard", None),
    )
    document = openapi_document(endpoints, version=version("sluice"))

    async def openapi(request: Request) -> Response:
        return json_response(200, document)  # public: it describes the API, it holds no data

    routes = [Route(f"{PREFIX}/openapi.json", openapi, methods=["GET"])]
    routes += [Route(ep.path, endpoint_app(ep, chain, services), methods=[ep.method]) for ep in endpoints]
    # Admin bodies are small documents; a megabyte bounds what one request may make us parse.
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error}, max_body_size=1 << 20)
    app.state.endpoints = endpoints
    app.state.auth = chain
    return app
