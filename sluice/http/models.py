"""`GET /v1/models`: the models the caller's key may use, in the caller's API shape."""

from __future__ import annotations

import orjson

from sluice.core.context import RequestRecord, new_request_id
from sluice.core.errors import SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.engine import Engine
from sluice.engine.context import RequestContext
from sluice.formats.registry import record_of
from sluice.gateway_signin.bearer import admit, signin_token
from sluice.gateway_signin.service import GatewaySignin
from sluice.governance.allowlist import listed_models
from sluice.http.asgi import Receive, Scope, Send, client_address, headers_of, respond
from sluice.http.errors import error_body, error_headers, status_of


class ModelsRoute:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.signin: GatewaySignin | None = None  # set by build_routes (auth.gateway_signin)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        # Anthropic clients send anthropic-version; everyone else gets OpenAI's list shape.
        wire = WireFormat.ANTHROPIC_MESSAGES if "anthropic-version" in headers else WireFormat.OPENAI_CHAT
        ctx = RequestContext(
            RequestRecord(new_request_id(), wire, Operation.GENERATE, scope["path"], client_address(scope))
        )
        try:
            token = signin_token(self.signin, headers)
            if self.signin is not None and token is not None:  # Claude Code's model discovery
                await admit(ctx, self.signin, self.engine.guard, token)
            key = await self.engine.authenticate(ctx, headers)
        except SluiceError as err:
            status = status_of(err, wire)
            await respond(
                send,
                status,
                error_body(err, wire, status, ctx.request_id),
                "application/json",
                {**error_headers(err, wire), "x-request-id": ctx.request_id},
            )
            return
        models = listed_models(key)
        doc = record_of(wire).models_list(models, {g.provider for g in key.grants})
        await respond(send, 200, orjson.dumps(doc), "application/json", {"x-request-id": ctx.request_id})
