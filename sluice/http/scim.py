"""`/scim/v2`: SCIM 2.0 for Okta, Entra and other directories, behind the SCIM bearer token.
Thin: parsing, status codes and SCIM's error schema here, everything else in sluice.auth.scim."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluice.audit.auth_failures import AuthGuard
from sluice.auth import scim_schema
from sluice.auth.directory import GROUP, USER
from sluice.auth.identity import Identity, ScimTokenAuthenticator
from sluice.auth.scim import ScimService
from sluice.auth.scim_ops import ScimError
from sluice.core.errors import SluiceError

PREFIX = "/scim/v2"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
MEDIA = "application/scim+json"
KINDS = {"Users": USER, "Groups": GROUP}


def scim_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status, headers, media_type=MEDIA)


def scim_error(status: int, detail: str, scim_type: str | None = None) -> Response:
    doc: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        doc["scimType"] = scim_type
    return scim_response(doc, status)


Handler = Callable[[Request], Awaitable[Response]]


def build_scim_app(identity: Identity, guard: AuthGuard | None = None) -> Starlette | None:
    if identity.scim is None or identity.scim_auth is None:
        return None
    service: ScimService = identity.scim
    auth: ScimTokenAuthenticator = identity.scim_auth

    def guarded(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            address = request.client.host if request.client else "unknown"
            try:
                if guard is not None:
                    await guard.check("scim", address)
            except SluiceError as exc:
                response = scim_error(429, exc.message)
                response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after or 1)))
                return response
            try:
                if await auth.authenticate(request.headers) is None:
                    if guard is not None:
                        await guard.failed("scim", address, "missing_credential")
                    return scim_error(401, "Send the SCIM token as 'Authorization: Bearer <token>'.")
                return await handler(request)
            except SluiceError as exc:
                # Counted per address and interval (one record per repeat would let a flood fill the log).
                if guard is not None:
                    await guard.failed("scim", address, "invalid_credential")
                return scim_error(401, exc.message)
            except ScimError as exc:
                return scim_error(exc.status, exc.detail, exc.scim_type)

        return endpoint

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise ScimError(400, "The body is not valid JSON.", "invalidSyntax") from None
        if not isinstance(doc, dict):
            raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
        return doc

    def excluded(request: Request) -> frozenset[str]:
        names = request.query_params.get("excludedAttributes", "")
        return frozenset(n.strip() for n in names.split(",") if n.strip() in ("members", "emails", "groups"))

    def kind_of(request: Request) -> str:
        kind = KINDS.get(request.path_params["resource"])
        if kind is None:
            raise ScimError(404, f"No SCIM resource type {request.path_params['resource']!r}.")
        return kind

    async def listing(request: Request) -> Response:
        q = request.query_params
        try:
            start = int(q.get("startIndex", "1"))
            count = int(q["count"]) if "count" in q else None
        except ValueError:
            raise ScimError(400, "startIndex and count are integers.", "invalidValue") from None
        return scim_response(await service.list(kind_of(request), q.get("filter"), start, count, excluded(request)))

    async def create(request: Request) -> Response:
        kind = kind_of(request)
        object_id, body = await service.create(kind, await body_of(request), "scim")
        doc = service.render(kind, object_id, body)
        return scim_response(doc, 201, {"location": doc["meta"]["location"]})

    async def read(request: Request) -> Response:
        kind, object_id = kind_of(request), request.path_params["id"]
        return scim_response(service.render(kind, object_id, await service.get(kind, object_id), excluded(request)))

    async def replace(request: Request) -> Response:
        kind, object_id = kind_of(request), request.path_params["id"]
        body = await service.replace(kind, object_id, await body_of(request), "scim")
        return scim_response(service.render(kind, object_id, body))

    async def patch(request: Request) -> Response:
        kind, object_id = kind_of(request), request.path_params["id"]
        body = await service.patch(kind, object_id, await body_of(request), "scim")
        return scim_response(service.render(kind, object_id, body))

    async def delete(request: Request) -> Response:
        await service.delete(kind_of(request), request.path_params["id"], "scim")
        return Response(status_code=204)

    async def provider_config(request: Request) -> Response:
        return scim_response(scim_schema.service_provider_config())

    async def resource_types(request: Request) -> Response:
        return scim_response(scim_schema.listing(scim_schema.resource_types()))

    async def schemas(request: Request) -> Response:
        return scim_response(scim_schema.listing(scim_schema.schemas()))

    async def one_of(request: Request) -> Response:
        found = scim_schema.resource_types() if "ResourceTypes" in request.url.path else scim_schema.schemas()
        for doc in found:
            if doc["id"] == request.path_params["id"]:
                return scim_response(doc)
        raise ScimError(404, f"{request.path_params['id']} not found.")

    resource = "{resource:str}"
    routes = [
        Route(f"{PREFIX}/ServiceProviderConfig", guarded(provider_config), methods=["GET"]),
        Route(f"{PREFIX}/ResourceTypes", guarded(resource_types), methods=["GET"]),
        Route(f"{PREFIX}/ResourceTypes/{{id:str}}", guarded(one_of), methods=["GET"]),
        Route(f"{PREFIX}/Schemas", guarded(schemas), methods=["GET"]),
        Route(f"{PREFIX}/Schemas/{{id:path}}", guarded(one_of), methods=["GET"]),
        Route(f"{PREFIX}/{resource}", guarded(listing), methods=["GET"]),
        Route(f"{PREFIX}/{resource}", guarded(create), methods=["POST"]),
        Route(f"{PREFIX}/{resource}/{{id:str}}", guarded(read), methods=["GET"]),
        Route(f"{PREFIX}/{resource}/{{id:str}}", guarded(replace), methods=["PUT"]),
        Route(f"{PREFIX}/{resource}/{{id:str}}", guarded(patch), methods=["PATCH"]),
        Route(f"{PREFIX}/{resource}/{{id:str}}", guarded(delete), methods=["DELETE"]),
    ]
    app = Starlette(routes=routes)

    async def not_found(request: Request, exc: Exception) -> Response:
        return scim_error(404, f"No SCIM endpoint {request.method} {request.url.path}.")

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    return app
