"""The agents' own telemetry (OTLP/HTTP) at `POST /v1/metrics`, `/v1/logs` and `/v1/traces`.

Two kinds of caller send it: a signed-in Claude Code (a gateway sign-in token, where the sign-in's
managed settings point it; docs/design/claude-gateway-protocol.md, "Telemetry"), and Codex or
Gemini CLI, which hold a Sluice virtual key and export with it as a bearer header (docs/agents/).
Either way the credential is checked as inference checks it, through the same failure guard, and
the points are attributed to the key it names (and the key's user): never to the `user.*` or
identity attributes the client sets, which any client can set. Metrics are stored per data point
(sluice.gateway_signin.otlp); every accepted signal is handed to the forwarder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from google.protobuf.message import Message
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sluice.audit.auth_failures import AuthGuard
from sluice.core.context import new_request_id
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat
from sluice.gateway_signin import otlp
from sluice.gateway_signin.bearer import signin_token
from sluice.gateway_signin.http import NO_STORE
from sluice.gateway_signin.service import GatewaySignin
from sluice.governance.keys import KeyCache, credential_from
from sluice.http.errors import error_body, error_headers, status_of
from sluice.storage.grants import AgentMetric
from sluice.storage.records import VirtualKey

GUARD_SURFACE = "telemetry"
ROUTES = [("POST", "/v1/metrics"), ("POST", "/v1/logs"), ("POST", "/v1/traces")]

Forward = Callable[[str, Message, VirtualKey], None]


def build_agent_telemetry_app(
    keys: KeyCache,
    signin: GatewaySignin | None,
    guard: AuthGuard | None,
    record: Callable[[list[AgentMetric]], Awaitable[None]],
    forward: Forward | None,
) -> Starlette:
    cumulative = otlp.Cumulative()

    async def attempt(headers: dict[str, str], cached_only: bool) -> VirtualKey:
        token = signin_token(signin, headers)
        if token is not None and signin is not None:
            return await signin.key_for(token)
        secret = credential_from(headers)
        if secret is None:
            raise SluiceError(ErrorKind.CALLER_MISSING_KEY, "Send your Sluice key (or gateway token) as a bearer.")
        return await keys.authenticate(secret, cached_only=cached_only)

    async def authenticate(request: Request) -> VirtualKey | Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        address = request.client.host if request.client else "unknown"
        try:
            if guard is None:
                return await attempt(headers, False)
            return await guard.screen(GUARD_SURFACE, address, lambda cached: attempt(headers, cached))
        except SluiceError as err:
            wire = WireFormat.ANTHROPIC_MESSAGES  # what Claude Code reads; the others read the status
            status = status_of(err, wire)
            refusal = error_body(err, wire, status, new_request_id())
            return Response(refusal, status, error_headers(err, wire), media_type="application/json")

    async def telemetry(request: Request) -> Response:
        key = await authenticate(request)
        if isinstance(key, Response):
            return key
        signal = request.url.path.rsplit("/", 1)[-1]
        content_type = request.headers.get("content-type", "")
        try:
            declared = int(request.headers.get("content-length") or 0)
            if declared > otlp.MAX_BODY:
                raise otlp.OtlpError(413, "The export batch is too large.")
            raw = bytearray()  # Gemini CLI posts chunked: appending to bytes would copy at every chunk
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > otlp.MAX_BODY:
                    raise otlp.OtlpError(413, "The export batch is too large.")
            encoding = request.headers.get("content-encoding")
            message = otlp.parse(signal, otlp.decompress(bytes(raw), encoding), content_type)
            if isinstance(message, ExportMetricsServiceRequest):
                await record(otlp.metric_rows(message, key, cumulative))
            if forward is not None:  # after storing: forwarding adds the gateway's identity attributes
                forward(signal, message, key)
        except (otlp.OtlpError, ValueError) as err:
            status, text = (err.status, err.message) if isinstance(err, otlp.OtlpError) else (400, str(err))
            refusal = orjson.dumps({"code": 3 if status == 400 else 8, "message": text})  # google.rpc.Status
            return Response(refusal, status, NO_STORE, media_type="application/json")
        body, media = otlp.success(content_type)
        return Response(body, 200, NO_STORE, media_type=media)

    return Starlette(routes=[Route(path, telemetry, methods=["POST"]) for _, path in ROUTES])
