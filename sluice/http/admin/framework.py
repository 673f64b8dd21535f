"""The admin API's small framework over Starlette: an endpoint is data (method, path, RBAC action,
pydantic models for query, body and response) plus an async handler. The same table builds the
Starlette routes, the OpenAPI document and the RBAC matrix test, so they cannot drift apart.

Every request is authenticated by a chain of Authenticators (the first that recognises the
credential decides), then parsed (422 with field paths), then handled; the handler authorizes
against the scope of the resource it touches (`Call.authorize`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from sluice.admin.declarative import DeclarationError
from sluice.admin.secrets import SecretError
from sluice.admin.service import Conflict, Invalid, NotFound
from sluice.audit.auth_failures import REASONS, AuthGuard
from sluice.auth.principal import Authenticator, Principal
from sluice.auth.rbac import Scope, decide
from sluice.core.errors import SluiceError

log = logging.getLogger("sluice.admin.http")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.details = status, kind, message, details
        self.retry_after = retry_after


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorInfo(BaseModel):
    type: str
    message: str
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    error: ErrorInfo


def json_response(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


def error_response(err: ApiError) -> Response:
    body: dict[str, Any] = {"type": err.kind, "message": err.message}
    if err.details is not None:
        body["details"] = err.details
    headers = {"www-authenticate": "Bearer"} if err.status == 401 else {}
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
    return Response(orjson.dumps({"error": body}), err.status, headers=headers, media_type="application/json")


def validation_error(exc: ValidationError, where: str) -> ApiError:
    details = [{"loc": [where, *(p for p in e["loc"])], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    first = details[0]
    path = ".".join(str(p) for p in first["loc"])
    return ApiError(422, "validation_error", f"{path}: {first['msg']}", details)


@dataclass
class Call:
    """One admin request, parsed."""

    principal: Principal
    action: str
    path: dict[str, str]
    query: Any
    body: Any
    services: Any

    def authorize(self, scope: Scope, action: str | None = None) -> None:
        decision = decide(self.principal, action or self.action, scope)
        if not decision.allowed:
            raise ApiError(403, "forbidden", f"Not allowed: {decision.reason}.")

    def allowed(self, scope: Scope, action: str | None = None) -> bool:
        return decide(self.principal, action or self.action, scope).allowed


Handler = Callable[[Call], Awaitable[Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # Starlette template, e.g. /api/keys/{key_id}
    action: str  # the RBAC action it needs (on the scope the handler finds)
    handler: Handler
    summary: str
    tag: str
    response: type[BaseModel] | None = None
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # besides 401, 403 and 422, which every endpoint may answer
    csv: bool = False  # also answers text/csv (?format=csv)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def operation_id(self) -> str:
        return (
            self.extra.get("operation_id")
            or f"{self.method.lower()}{self.path.replace('/', '_').replace('{', '').replace('}', '')}"
        )


class AuthChain:
    def __init__(self, authenticators: Sequence[Authenticator], guard: AuthGuard | None = None) -> None:
        self.authenticators = list(authenticators)
        self.guard = guard

    async def authenticate(self, headers: dict[str, str], address: str = "unknown") -> Principal:
        guard = self.guard
        try:
            if guard is not None:
                await guard.check("api", address)
        except SluiceError as err:
            raise ApiError(429, "rate_limited", err.message, retry_after=err.retry_after) from None
        try:
            for auth in self.authenticators:
                principal = await auth.authenticate(headers)
                if principal is not None:
                    return principal
        except SluiceError as err:
            if guard is not None:
                await guard.failed("api", address, REASONS.get(err.kind, "invalid_credential"))
            raise ApiError(401, "unauthenticated", err.message) from None
        if guard is not None:
            reason = "invalid_credential" if headers.get("authorization") else "missing_credential"
            await guard.failed("api", address, reason)
        if headers.get("authorization"):
            raise ApiError(401, "unauthenticated", "The credential is not recognised by any configured authenticator.")
        raise ApiError(401, "unauthenticated", "Send an admin credential as 'Authorization: Bearer <token>'.")


def endpoint_app(ep: Endpoint, auth: AuthChain, services: Any) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            headers = {k.lower(): v for k, v in request.headers.items()}
            principal = await auth.authenticate(headers, request.client.host if request.client else "unknown")
            if principal.via == "session" and ep.method != "GET" and headers.get("x-sluice-csrf") != "1":
                # A cookie rides along on requests other sites make the browser send; this header
                # cannot (as on POST /auth/me/key).
                raise ApiError(
                    403, "forbidden", "A change made with a session cookie needs the header 'x-sluice-csrf: 1'."
                )
            call = Call(principal, ep.action, dict(request.path_params), None, None, services)
            if ep.query is not None:
                call.query = _parse(ep.query, dict(request.query_params), "query")
            if ep.body is not None:
                raw = await request.body()
                try:
                    doc = orjson.loads(raw) if raw.strip() else {}  # no body: every field's default
                except orjson.JSONDecodeError as exc:
                    raise ApiError(
                        422,
                        "validation_error",
                        f"body: not valid JSON ({exc})",
                        [{"loc": ["body"], "msg": "not valid JSON", "type": "json_invalid"}],
                    ) from None
                call.body = _parse(ep.body, doc, "body")
            result = await ep.handler(call)
        except ApiError as err:
            return error_response(err)
        except NotFound as exc:
            return error_response(ApiError(404, "not_found", str(exc)))
        except Conflict as exc:
            return error_response(ApiError(409, "conflict", str(exc)))
        except (SecretError, DeclarationError, Invalid) as exc:
            return error_response(
                ApiError(422, "validation_error", str(exc), [{"loc": ["body"], "msg": str(exc), "type": "value_error"}])
            )
        except ValidationError as exc:
            return error_response(validation_error(exc, "body"))
        except Exception:
            log.exception("admin %s %s failed", ep.method, ep.path)
            return error_response(ApiError(500, "internal_error", "The gateway failed; the error is in its log."))
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=ep.status)
        content = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        return json_response(ep.status, content)

    return run


def _parse(model: type[BaseModel], data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, where) from None
    except (ValueError, OverflowError) as exc:  # e.g. a duration too long for any calendar
        raise ApiError(
            422, "validation_error", f"{where}: {exc}", [{"loc": [where], "msg": str(exc), "type": "value_error"}]
        ) from None
