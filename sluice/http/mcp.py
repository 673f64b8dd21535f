"""`/mcp`: the MCP gateway over Streamable HTTP, behind virtual-key authentication."""

from __future__ import annotations

import orjson
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from sluice.core.errors import SluiceError
from sluice.core.types import WireFormat
from sluice.http.asgi import Receive, Scope, Send, headers_of, respond
from sluice.http.errors import status_of
from sluice.mcp.gateway import McpGateway


class McpRoute:
    def __init__(self, gateway: McpGateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.gateway.enabled:
            body = orjson.dumps({"error": "No MCP servers are configured on this gateway."})
            await respond(send, 404, body, "application/json", {})
            return
        key = await self.gateway.authenticate(headers_of(scope))
        if isinstance(key, SluiceError):
            # A plain 401/403: advertising OAuth here would make Claude Code drop the Bearer header.
            status = status_of(key, WireFormat.OPENAI_CHAT)
            await respond(send, status, orjson.dumps({"error": key.message}), "application/json", {})
            return
        # Sessions are bound to the key: another key cannot reuse this session's id.
        user = AuthenticatedUser(AccessToken(token=key.id, client_id=key.id, scopes=[]))
        await self.gateway.manager.handle_request({**scope, "user": user}, receive, send)
