"""`GET /v1/models`: the models the caller's key may use, in the caller's API shape."""

from __future__ import annotations

import orjson

from sluice.core.context import RequestRecord, new_request_id
from sluice.core.errors import SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.engine import Engine
from sluice.engine.context import RequestContext
from sluice.governance.allowlist import listed_models
from sluice.http.asgi import Receive, Scope, Send, client_address, headers_of, respond
from sluice.http.errors import error_body, error_headers, status_of

_EPOCH_2025 = 1735689600


class ModelsRoute:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = headers_of(scope)
        # Anthropic clients send anthropic-version; everyone else gets OpenAI's list shape.
        wire = WireFormat.ANTHROPIC_MESSAGES if "anthropic-version" in headers else WireFormat.OPENAI_CHAT
        ctx = RequestContext(
            RequestRecord(new_request_id(), wire, Operation.GENERATE, scope["path"], client_address(scope))
        )
        try:
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
        if wire is WireFormat.ANTHROPIC_MESSAGES:
            data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in models]
            doc: dict[str, object] = {
                "data": data,
                "has_more": False,
                "first_id": models[0] if models else None,
                "last_id": models[-1] if models else None,
            }
        else:
            owner = {g.provider for g in key.grants}
            doc = {
                "object": "list",
                "data": [
                    {
                        "id": m,
                        "object": "model",
                        "created": _EPOCH_2025,
                        "owned_by": m.split("/", 1)[0] if "/" in m else ",".join(sorted(owner)),
                    }
                    for m in models
                ],
            }
        await respond(send, 200, orjson.dumps(doc), "application/json", {"x-request-id": ctx.request_id})
