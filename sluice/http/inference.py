"""The inference routes: read the request, let the engine decide and call, write the answer
(whole or streamed), and make sure every request ends up in the request log."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson

from sluice.core.context import RequestRecord, new_request_id
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.tasks import spawn
from sluice.core.types import Operation, WireFormat
from sluice.engine import Engine, Inbound, Outcome
from sluice.engine.context import RequestContext
from sluice.gateway_signin import usage
from sluice.gateway_signin.bearer import admit, signin_token
from sluice.gateway_signin.service import GatewaySignin
from sluice.http.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    client_address,
    discard_body,
    encode_headers,
    headers_of,
    read_body,
    respond,
)
from sluice.http.errors import (
    error_body,
    error_headers,
    failure_response,
    signed_in_budget_refusal,
    status_of,
    stream_error_event,
)
from sluice.http.identity import fill_caller
from sluice.http.sole_keys import sole_keys

log = logging.getLogger("sluice.http")
_CLIENT_CLOSED = 499  # nginx's convention for "the client went away", used in the request log
# A stream's answer must not be buffered or cached on its way (nginx reads x-accel-buffering).
_STREAM_HEADERS = (("cache-control", "no-cache"), ("x-accel-buffering", "no"))


class InferenceRoute:
    def __init__(self, engine: Engine, wire: WireFormat, operation: Operation) -> None:
        self.engine = engine
        self.wire = wire
        self.operation = operation
        # Set by build_routes with auth.gateway_signin: agents' sign-in tokens stand for the
        # person's virtual key.
        self.signin: GatewaySignin | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = RequestContext(
            RequestRecord(new_request_id(), self.wire, self.operation, scope["path"], client_address(scope))
        )
        headers = headers_of(scope)
        try:
            await self._authenticate(ctx, headers, receive)
            body = await read_body(receive)
            inbound = self.inbound(scope, headers, body)
            fill_caller(ctx, inbound.headers, inbound.doc)
            outcome = self.answer(await self.engine.run(ctx, inbound))
            if ctx.signed_in and self.wire is WireFormat.ANTHROPIC_MESSAGES:
                _usage_headers(ctx, outcome)
            if outcome.chunks is None:
                ctx.mark_first_byte()
                status, body, content_type = outcome.status, outcome.body or b"", outcome.content_type
                if outcome.failure is not None:  # a translated provider error, in the caller's shape
                    status, body = failure_response(outcome.failure, self.wire, ctx.request_id)
                    ctx.status, content_type = status, "application/json"
                await send(
                    {"type": "http.response.start", "status": status, "headers": self._head(ctx, outcome, content_type)}
                )
                await send({"type": "http.response.body", "body": body})
                ctx.delivered = True
            else:
                await self._stream(ctx, outcome, outcome.chunks, receive, send)
        except SluiceError as err:
            await self._fail(ctx, err, send)
        except BodyTooLarge:
            await self._fail(
                ctx, SluiceError(ErrorKind.CALLER_BAD_REQUEST, "The request body is too large."), send, 413
            )
        except (ClientGone, asyncio.CancelledError):
            # A caller that hangs up once the answer's last event is out got the whole answer;
            # only one that leaves before is gone (499).
            if not ctx.delivered:
                ctx.status, ctx.decision, ctx.reason = _CLIENT_CLOSED, "error", "client disconnected"
        except Exception:
            log.exception("internal error in request %s", ctx.request_id)
            await self._fail(ctx, SluiceError(ErrorKind.GATEWAY_INTERNAL, "Internal gateway error."), send)
        finally:
            await self.engine.finish(ctx)

    async def _authenticate(self, ctx: RequestContext, headers: dict[str, str], receive: Receive) -> None:
        """The key from the headers, before the body: a caller without a valid key may send at
        most `auth.guard.unauthenticated_body_bytes` before it is refused."""
        try:
            token = signin_token(self.signin, headers)
            if self.signin is not None and token is not None:
                await admit(ctx, self.signin, self.engine.guard, token)
            await self.engine.authenticate(ctx, headers)
        except SluiceError as err:
            limit = self.engine.guard.config.unauthenticated_body_bytes if self.engine.guard else 64 * 1024
            if not await discard_body(receive, limit):
                err.details["close"] = True
            raise

    def inbound(self, scope: Scope, headers: dict[str, str], body: bytes) -> Inbound:
        """The request as the engine sees it (a surface may reshape it into its wire format)."""
        model, stream = self.url_facts(scope)
        query = scope.get("query_string", b"").decode()
        doc = parse_json(body)
        return Inbound(self.wire, self.operation, sole_keys(body, doc, self.wire), doc, headers, query, model, stream)

    def url_facts(self, scope: Scope) -> tuple[str | None, bool | None]:
        """(model, streaming) when the URL carries them instead of the body."""
        return None, None

    def answer(self, outcome: Outcome) -> Outcome:
        """The engine's answer as this surface sends it (a surface may re-frame it)."""
        return outcome

    def stream_error(self, err: SluiceError) -> bytes:
        """What to send when the stream fails after its headers went out."""
        return stream_error_event(err, self.wire)

    def error_response(self, err: SluiceError, status: int, request_id: str) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) of a refusal or failure before any answer was sent."""
        headers = {**error_headers(err, self.wire), "x-request-id": request_id}
        return status, error_body(err, self.wire, status, request_id), headers

    @staticmethod
    def _head(
        ctx: RequestContext, outcome: Outcome, content_type: str, extra: tuple[tuple[str, str], ...] = ()
    ) -> list[tuple[bytes, bytes]]:
        """The answer's encoded headers: content type, the outcome's, the request id, `extra`;
        a later one replaces an earlier one of the same name in its place (as merging dicts
        would). Encoded in one list, without the dict copies, unless a name repeats."""
        headers = outcome.headers
        if "x-request-id" in headers or any(name in headers for name, _ in extra):
            return encode_headers(content_type, {**headers, "x-request-id": ctx.request_id, **dict(extra)})
        out = [(b"content-type", content_type.encode("latin-1"))]
        out += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        out.append((b"x-request-id", ctx.request_id.encode("latin-1")))
        out += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra]
        return out

    async def _stream(
        self, ctx: RequestContext, outcome: Outcome, chunks: AsyncIterator[bytes], receive: Receive, send: Send
    ) -> None:
        # Wait for the first chunk before sending headers, so a failure before the first byte
        # still gets a plain HTTP error (and, later, a fallback).
        iterator = chunks.__aiter__()
        watcher = spawn(_cancel_on_disconnect(receive, asyncio.current_task()), name="disconnect-watch")
        started = False
        try:
            first = await iterator.__anext__()
            ctx.mark_first_byte()
            headers = self._head(ctx, outcome, outcome.content_type, _STREAM_HEADERS)
            await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
            started = True
            await send({"type": "http.response.body", "body": first, "more_body": True})
            ctx.delivered = ctx.answer_complete
            async for chunk in iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if ctx.answer_complete:
                    # The provider's last event is out, however long it then holds its connection.
                    ctx.delivered = True
            await send({"type": "http.response.body", "body": b""})
            ctx.delivered = True
        except StopAsyncIteration:
            await respond(
                send, outcome.status, b"", outcome.content_type, {**outcome.headers, "x-request-id": ctx.request_id}
            )
            ctx.delivered = True
        except SluiceError as err:
            if not started:
                raise
            ctx.refuse(status_of(err, self.wire), err.kind.name, err.message, denied=False)
            await send({"type": "http.response.body", "body": self.stream_error(err), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            # Cancelled, not waited for: its next step raises CancelledError where it waits, so it
            # can no longer cancel this task, and this task need not sleep one loop turn for it.
            watcher.cancel()
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _fail(self, ctx: RequestContext, err: SluiceError, send: Send, status: int | None = None) -> None:
        if (
            ctx.signed_in
            and err.kind is ErrorKind.POLICY_BUDGET_EXCEEDED
            and self.wire is WireFormat.ANTHROPIC_MESSAGES
            and err.details.get("scope") != "session"  # a session cap is no budget the client has words for
        ):
            status, body, headers = signed_in_budget_refusal(err, ctx.request_id, datetime.now(UTC))
        else:
            status, body, headers = self.error_response(err, status or status_of(err, self.wire), ctx.request_id)
        if err.details.get("close"):  # the unread rest of the body must not be taken for a request
            headers["connection"] = "close"
        ctx.refuse(status, err.kind.name, err.message, denied=err.kind.fault in ("caller", "policy"))
        try:
            await respond(send, status, body, "application/json", headers)
        except Exception:  # the client may be gone already; the request is still recorded
            ctx.reason = f"{err.message} (client gone before the error was sent)"


def _usage_headers(ctx: RequestContext, outcome: Outcome) -> None:
    """A signed-in person's standing against their own budgets, in the headers Claude Code reads;
    the provider's own `anthropic-ratelimit-*` (the organisation's quota) never reaches them."""
    for name in [n for n in outcome.headers if n.startswith("anthropic-ratelimit-")]:
        del outcome.headers[name]
    admission = ctx.charge.admission if ctx.charge is not None else None
    if admission is not None:
        outcome.headers.update(usage.answer_headers(usage.admission_standings(admission)))


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[object] | None) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if task is not None:
                task.cancel()
            return


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SluiceError(ErrorKind.CALLER_BAD_REQUEST, "The request body must be a JSON object.")
    return doc


GEMINI_PATH = re.compile(
    r"^(?:/genai)?/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$"
)


class GeminiRoute(InferenceRoute):
    """`/v1beta/models/{model}:generateContent`, `:streamGenerateContent`, `:countTokens` (also
    under /v1 and /genai): the model and streaming come from the URL."""

    def __init__(self, engine: Engine, operation: Operation) -> None:
        super().__init__(engine, WireFormat.GEMINI, operation)

    def url_facts(self, scope: Scope) -> tuple[str | None, bool | None]:
        match = GEMINI_PATH.match(scope["path"])
        assert match is not None  # the router sends only matching paths here
        return match.group(1), match.group(2) == "streamGenerateContent"
