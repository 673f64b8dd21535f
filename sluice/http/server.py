"""The ASGI application: a dictionary router over bare handlers, plus lifespan."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from google.protobuf.message import Message

from sluice.app import Services
from sluice.audit.auth_failures import AuthGuard
from sluice.auth.principal import Authenticator
from sluice.core.context import new_request_id
from sluice.core.types import Operation, WireFormat
from sluice.gateway_signin.authorize_http import ROUTES as AUTHORIZE_ROUTES
from sluice.gateway_signin.authorize_http import authorize_routes
from sluice.gateway_signin.http import ROUTES as SIGNIN_ROUTES
from sluice.gateway_signin.http import build_gateway_signin_app
from sluice.gateway_signin.usage import usage_document
from sluice.http.admin import PREFIX as ADMIN_PREFIX
from sluice.http.admin import build_admin_app
from sluice.http.agent_telemetry import ROUTES as TELEMETRY_ROUTES
from sluice.http.agent_telemetry import build_agent_telemetry_app
from sluice.http.asgi import Receive, Scope, Send, oversized_headers, respond
from sluice.http.cloud import CloudRoutes, inference_profiles
from sluice.http.console import PREFIX as CONSOLE_PREFIX
from sluice.http.console import build_console_app
from sluice.http.health import Readiness, alive
from sluice.http.inference import GEMINI_PATH, GeminiRoute, InferenceRoute
from sluice.http.mcp import McpRoute
from sluice.http.metrics import MetricsRoute
from sluice.http.models import ModelsRoute
from sluice.http.scim import PREFIX as SCIM_PREFIX
from sluice.http.scim import build_scim_app
from sluice.http.sso import build_sso_app
from sluice.observability.agent_forward import identity_attributes
from sluice.storage.records import VirtualKey

log = logging.getLogger("sluice.http")


class Route(Protocol):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


async def _empty_ok(scope: Scope, receive: Receive, send: Send) -> None:
    # Claude Code pre-warms its connection with HEAD; answer without touching anything.
    await respond(send, 200, b"", "text/plain", {"x-request-id": new_request_id()})


async def _health(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, b'{"status":"ok"}', "application/json", {"x-request-id": new_request_id()})


def build_routes(services: Services) -> dict[tuple[str, str], Route]:
    engine = services.engine
    anthropic = InferenceRoute(engine, WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE)
    anthropic_count = InferenceRoute(engine, WireFormat.ANTHROPIC_MESSAGES, Operation.COUNT_TOKENS)
    chat = InferenceRoute(engine, WireFormat.OPENAI_CHAT, Operation.GENERATE)
    embeddings = InferenceRoute(engine, WireFormat.OPENAI_EMBEDDINGS, Operation.EMBED)
    responses = InferenceRoute(engine, WireFormat.OPENAI_RESPONSES, Operation.GENERATE)
    responses_count = InferenceRoute(engine, WireFormat.OPENAI_RESPONSES, Operation.COUNT_TOKENS)
    models = ModelsRoute(engine)
    for route in (anthropic, anthropic_count, chat, embeddings, responses, responses_count, models):
        route.signin = services.identity.gateway
    routes: dict[tuple[str, str], Route] = {}
    for prefix in ("", "/anthropic"):
        routes["POST", f"{prefix}/v1/messages"] = anthropic
        routes["POST", f"{prefix}/v1/messages/count_tokens"] = anthropic_count
        routes["GET", f"{prefix}/v1/models"] = models
    for prefix in ("", "/openai"):
        routes["POST", f"{prefix}/v1/chat/completions"] = chat
        routes["POST", f"{prefix}/v1/embeddings"] = embeddings
        routes["POST", f"{prefix}/v1/responses"] = responses
        routes["POST", f"{prefix}/v1/responses/input_tokens"] = responses_count
        routes["GET", f"{prefix}/v1/models"] = models
    for path in ("/", "/anthropic", "/anthropic/", "/openai", "/v1"):
        routes["HEAD", path] = _empty_ok
    routes["GET", "/"] = _health
    routes["GET", "/healthz"] = alive
    routes["GET", "/readyz"] = Readiness(services)
    routes["GET", "/bedrock/inference-profiles"] = inference_profiles
    routes["GET", "/metrics"] = MetricsRoute(services)
    mcp = McpRoute(services.mcp, services.guard)
    mcp.stops = services.stops
    mcp.signin = services.identity.gateway
    for method in ("GET", "POST", "DELETE"):
        routes[method, "/mcp"] = mcp
    signin, signer = services.identity.gateway, services.identity.signer
    if signin is not None and signer is not None:  # agents' sign-in (auth.gateway_signin)
        codes = services.identity.codes
        extra = authorize_routes(codes, services.identity, signer, services.guard) if codes is not None else []
        signin_app = build_gateway_signin_app(
            signin,
            services.identity,
            signer,
            services.guard,
            codes=codes,
            extra_routes=extra,
            usage_of=_usage_of(services),
        )
        for method, path in [*SIGNIN_ROUTES, *(AUTHORIZE_ROUTES if codes is not None else [])]:
            routes[method, path] = signin_app
    telemetry = build_agent_telemetry_app(
        services.engine.keys, signin, services.guard, services.store.insert_agent_metrics, _forward(services)
    )
    for method, path in TELEMETRY_ROUTES:  # agents' own OTLP: a sign-in token or a virtual key
        routes[method, path] = telemetry
    routes["GET", "/sse"] = mcp.sse_stream
    routes["POST", "/messages"] = mcp.sse_message
    routes["POST", "/messages/"] = mcp.sse_message
    return routes


def _usage_of(services: Services) -> Callable[[VirtualKey], Awaitable[dict[str, Any]]]:
    """`GET /api/oauth/usage` of a signed-in person: their own budgets, from the live counters."""

    async def usage_of(key: VirtualKey) -> dict[str, Any]:
        return await usage_document(services.limits, services.store, key, datetime.now(UTC))

    return usage_of


def _forward(services: Services) -> Callable[[str, Message, VirtualKey], None] | None:
    """Hands an accepted agent export to the forwarder with the person's identity (never the token)."""
    forwarder = services.agent_forward
    if forwarder is None:
        return None

    def forward(signal: str, message: Message, key: VirtualKey) -> None:
        forwarder.submit(signal, message, identity_attributes(key.user_id, key.id, key.profile_id, key.team_id))

    return forward


class SluiceASGI:
    def __init__(self, services: Services, *, admin_authenticators: Sequence[Authenticator] | None = None) -> None:
        """`admin_authenticators`: how admin API callers prove who they are, tried in order
        (default: `services.authenticators`)."""
        self.services = services
        if services.guard is None:  # Services built by hand (tests): the same guard as build_services'
            services.guard = AuthGuard(services.config.auth.guard, services.audit)
            services.engine.guard = services.guard
        self.limits = services.config.auth.guard
        self.routes = build_routes(services)
        # Starlette serves the admin API: convenience over microseconds, away from the hot path.
        self.admin = build_admin_app(services, admin_authenticators)
        self.gemini = GeminiRoute(services.engine, Operation.GENERATE)
        self.gemini_count = GeminiRoute(services.engine, Operation.COUNT_TOKENS)
        self.cloud = CloudRoutes(services.engine)
        # Admin surfaces with path parameters, served by Starlette apps under a prefix.
        self.mounts: list[tuple[str, Route]] = [("/auth", build_sso_app(services.identity, services.guard))]
        self.mounts.append((CONSOLE_PREFIX, build_console_app(services, admin_authenticators)))  # the console
        self.routes["GET", CONSOLE_PREFIX] = self.mounts[-1][1]  # /console and /console/ (slash stripped)
        scim = build_scim_app(services.identity, services.guard)
        if scim is not None:
            self.mounts.append((SCIM_PREFIX, scim))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            too_large = oversized_headers(scope, self.limits.max_header_bytes, self.limits.max_header_line_bytes)
            if too_large is not None:
                body = orjson.dumps({"error": {"message": too_large, "type": "request_header_fields_too_large"}})
                await respond(send, 431, body, "application/json", {"connection": "close"})
                return
            path = scope["path"]
            if len(path) > 1 and path.endswith("/") and (scope["method"], path) not in self.routes:
                path = path.rstrip("/")
            route = self.routes.get((scope["method"], path))
            if route is None and (path.startswith(ADMIN_PREFIX + "/") or path == ADMIN_PREFIX):
                await self.admin(scope, receive, send)
                return
            if route is None and scope["method"] == "POST" and GEMINI_PATH.match(path):
                route = self.gemini_count if path.endswith(":countTokens") else self.gemini
            if route is None and scope["method"] == "POST":
                route = self.cloud.match(path)
            if route is None:
                route = next((app for prefix, app in self.mounts if path.startswith(prefix + "/")), None)
            if route is None:
                await _not_found(scope, send, self.routes)
                return
            await route(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.services.start()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.services.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _not_found(scope: Scope, send: Send, routes: dict[tuple[str, str], Route]) -> None:
    path, method = scope["path"], scope["method"]
    allowed = sorted(m for m, p in routes if p == path)
    if allowed:
        body = orjson.dumps(
            {"error": {"message": f"Method {method} not allowed on {path}.", "type": "invalid_request_error"}}
        )
        await respond(
            send, 405, body, "application/json", {"allow": ", ".join(allowed), "x-request-id": new_request_id()}
        )
        return
    body = orjson.dumps({"error": {"message": f"No route {method} {path} on this gateway.", "type": "not_found_error"}})
    await respond(send, 404, body, "application/json", {"x-request-id": new_request_id()})
