"""The MCP endpoints behind virtual-key authentication: `/mcp` (Streamable HTTP, both protocol
eras) and the older HTTP+SSE transport (`GET /sse`, `POST /messages/`) for clients that still
need it."""

from __future__ import annotations

import anyio
import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.sse import SseServerTransport

from sluice.audit.auth_failures import AuthGuard
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import WireFormat
from sluice.gateway_signin.bearer import signin_token
from sluice.gateway_signin.http import PROTECTED_RESOURCE
from sluice.gateway_signin.service import GatewaySignin
from sluice.http.asgi import Receive, Scope, Send, client_address, headers_of, respond
from sluice.http.errors import error_headers, status_of
from sluice.http.identity import session_id_of
from sluice.mcp.gateway import McpGateway
from sluice.sessions.stops import Stops, refusal
from sluice.storage.records import VirtualKey

SSE_MESSAGES = "/messages/"


class McpRoute:
    def __init__(self, gateway: McpGateway, guard: AuthGuard | None = None) -> None:
        self.gateway = gateway
        self.guard = guard
        self.sse = SseServerTransport(SSE_MESSAGES)
        self.stops: Stops | None = None  # the kill switch: a stopped key's or session's tool calls are refused too
        # auth.gateway_signin: a signed-in agent's bearer token is the person's key here too.
        self.signin: GatewaySignin | None = None

    async def _admit(self, scope: Scope, send: Send, *, sse: bool = False) -> Scope | None:
        """The scope the SDK gets, with the caller's key in it; None once a refusal was sent."""
        if not self.gateway.enabled or (sse and not self.gateway.config.sse_transport):
            body = orjson.dumps({"error": "No MCP servers are configured on this gateway."})
            await respond(send, 404, body, "application/json", {})
            return None
        headers = headers_of(scope)
        key = await self._authenticate(headers, client_address(scope))
        if isinstance(key, SluiceError):
            status = status_of(key, WireFormat.OPENAI_CHAT)
            extra = error_headers(key, WireFormat.OPENAI_CHAT)
            if status == 401 and self.signin is not None:
                extra["www-authenticate"] = self._challenge(key)
            await respond(send, status, orjson.dumps({"error": key.message}), "application/json", extra)
            return None
        agent_session = session_id_of(headers)  # the same id its LLM calls are logged under
        if self.stops is not None and (stop := self.stops.check(key, agent_session)) is not None:
            err = refusal(stop)
            await respond(
                send,
                status_of(err, WireFormat.OPENAI_CHAT),
                orjson.dumps({"error": err.message}),
                "application/json",
                {},
            )
            return None
        # Sessions are bound to the key: another key cannot reuse this session's id.
        user = AuthenticatedUser(AccessToken(token=key.id, client_id=key.id, scopes=[]))
        return {**scope, "user": user, "sluice.key": key, "sluice.agent_session": agent_session}

    def _challenge(self, err: SluiceError) -> str:
        """RFC 9728 5.1 / RFC 6750 3: where the sign-in is described. Sent only with
        auth.gateway_signin on: without it there is no authorization server to point at, and
        a bare 401 keeps a client with a static key on its key."""
        assert self.signin is not None
        challenge = f'Bearer resource_metadata="{self.signin.base}{PROTECTED_RESOURCE}/mcp"'
        if err.kind is not ErrorKind.CALLER_MISSING_KEY:  # a credential came and was refused
            challenge += ', error="invalid_token"'
        return challenge

    async def _authenticate(self, headers: dict[str, str], address: str) -> VirtualKey | SluiceError:
        token = signin_token(self.signin, headers)
        if self.guard is None:
            if token is not None and self.signin is not None:
                try:
                    return await self.signin.key_for(token, mcp=True)
                except SluiceError as err:
                    return err
            return await self.gateway.authenticate(headers)

        async def attempt(cached_only: bool) -> VirtualKey:
            if token is not None and self.signin is not None:
                return await self.signin.key_for(token, mcp=True)
            found = await self.gateway.authenticate(headers, cached_only=cached_only)
            if isinstance(found, SluiceError):
                raise found
            return found

        try:
            return await self.guard.screen("mcp", address, attempt)
        except SluiceError as err:
            return err

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        admitted = await self._admit(scope, send)
        if admitted is not None:
            await self.gateway.manager.handle_request(admitted, receive, send)

    async def sse_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /sse: one connection of the old transport, served until the client leaves or its
        key is revoked (which cancels it)."""
        admitted = await self._admit(scope, send, sse=True)
        if admitted is None:
            return
        key_id = admitted["sluice.key"].id
        server = self.gateway.server
        with anyio.CancelScope() as cancel:
            self.gateway.track_sse(key_id, cancel, add=True)
            try:
                async with self.sse.connect_sse(admitted, receive, send) as (read, write):
                    await server.run(read, write, server.create_initialization_options())
            finally:
                self.gateway.track_sse(key_id, cancel, add=False)

    async def sse_message(self, scope: Scope, receive: Receive, send: Send) -> None:
        admitted = await self._admit(scope, send, sse=True)
        if admitted is not None:
            await self.sse.handle_post_message(admitted, receive, send)
