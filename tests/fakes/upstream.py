"""A fake LLM provider that speaks the Anthropic Messages and OpenAI Chat Completions wire formats (and, through
``tests.fakes.responses_wire`` and ``tests.fakes.gemini_wire``, the OpenAI Responses API and Gemini).

Used by tests and benchmarks as the upstream behind the gateway. Every answer is rendered from the recorded-style
fixtures under ``tests/fixtures/{anthropic,openai}``: the fixtures are parsed once, the fields that change per request
(model, ids, text, usage, ...) are turned into slots, and the result is kept as byte templates. Serving a request fills
the slots, so apart from parsing the request body there is no JSON work per request, and the bytes keep the exact shape
of the recorded ones (compact JSON and ``event:``/``data:`` SSE for Anthropic, pretty-printed JSON and ``data:``-only
SSE ending in ``data: [DONE]`` for OpenAI). ``tests/unit/test_fake_upstream.py`` checks that rendering a fixture's own
values gives back the fixture byte for byte.

Behaviour
- Every request is first held to the rules its real API enforces (``tests.fakes.rules_anthropic``,
  ``rules_openai_chat``, ``rules_responses``, ``rules_gemini``, ``rules_converse``; each rule cites where the provider
  documents it) and refused, as the API would, in its own error format. Round-trip state is real: enabled Anthropic
  thinking is answered with a signed thinking block, Gemini 3 function calls carry a thoughtSignature, Responses
  remember their call ids for ``previous_response_id``; the next turn must send them back unchanged.
- The answer text is ``"echo: " + <last user text, truncated to 200 chars>``.
- Input tokens are ``max(1, len(body) // 4)``; output tokens are ``max(1, len(answer) // 4)``.
- Anthropic reports cache tokens (taken from the fixture) only when the request contains ``cache_control``;
  OpenAI reports ``cached_tokens`` = half the prompt rounded down to 128 once the prompt reaches 1024 tokens.
- Tools: Anthropic answers with ``tool_use`` when the request has ``tools`` and either ``tool_choice`` forces a tool
  (``any``/``tool``) or the last message's text contains "use a tool"; OpenAI the same with ``required`` or a named
  function. The tool is the one ``tool_choice`` names, else (Anthropic) the one whose name the prompt mentions, else
  the first. The tool input is built from the tool's JSON schema (its required properties).
- Model names script failures: ``error-429`` (429 + ``retry-after: 1``), ``error-500``, ``error-529`` (Anthropic 529
  ``overloaded_error``; 503 ``server_is_overloaded`` on OpenAI routes), ``slow`` (sleeps ``slow_delay`` before the first
  byte), ``stream-abort`` (drops the connection after a few events), ``stream-error`` (an in-stream error event).
- Auth: Anthropic routes need a key in ``x-api-key`` (or ``Authorization: Bearer``, which anthropic-python 2.x sends)
  and an ``anthropic-version`` header; OpenAI routes need ``Authorization: Bearer``. Failures use the providers' bodies.
- ``fail_next(status, body, headers, times)`` scripts the next answers, whatever the route.

The wires live in ``tests.fakes.recorded_wires`` (Anthropic, OpenAI Chat), ``responses_wire`` and ``gemini_wire``;
``wire_kit`` holds what they share. Run standalone (benchmarks): ``python -m tests.fakes.upstream --port 9999``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import rules_anthropic, rules_openai_chat, shapes
from tests.fakes.recorded_wires import AnthropicReply, AnthropicWire, OpenAIReply, OpenAIWire
from tests.fakes.rules_kit import Refusal, sign
from tests.fakes.wire_kit import (
    TOOL_TRIGGER,
    ToolUse,
    _last_message_text,
    _named_in,
    anthropic_message_id,
    anthropic_request_id,
    anthropic_tool_id,
    chunk_words,
    compact_json,
    echo_text,
    embedding_base64,
    embedding_vector,
    jint,
    last_user_text,
    openai_cached_tokens,
    openai_call_id,
    openai_completion_id,
    openai_request_id,
    pretty_json,
    tool_input_for,
)

# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    raw_path: str = ""  # the path as it came on the wire, percent-escapes and all

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class _Failure:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]


_ANTHROPIC = "anthropic"
_OPENAI = "openai"
_ROUTES: dict[tuple[str, str], str] = {}
for _prefix in ("", "/v1"):
    _ROUTES["POST", _prefix + "/messages"] = "messages"
    _ROUTES["POST", _prefix + "/messages/count_tokens"] = "count_tokens"
    _ROUTES["POST", _prefix + "/chat/completions"] = "chat"
    _ROUTES["POST", _prefix + "/embeddings"] = "embeddings"
    _ROUTES["POST", _prefix + "/responses"] = "responses"  # tests.fakes.responses_wire
    _ROUTES["POST", _prefix + "/responses/input_tokens"] = "input_tokens"
    _ROUTES["GET", _prefix + "/models"] = "models"

_ANTHROPIC_ORG = "4f2e8c1a-6b7d-4e3f-9a1c-2d5b8e7f0a93"
_DEFAULT_EMBEDDING_DIMS = {"text-embedding-3-large": 3072}


class FakeUpstream:
    """An aiohttp server speaking the Anthropic and OpenAI wire formats (see the module docstring).

    Knobs (plain attributes): ``record_requests`` (keep every request in ``requests``; on), ``slow_delay`` (seconds,
    for ``slow`` models), ``abort_after_events`` (events sent before ``stream-abort``/``stream-error``), and
    ``valid_keys`` (``None`` accepts any non-empty key; a set makes other keys fail with the provider's 401).
    ``reset()`` restores them, except ``record_requests``.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.statuses: list[int] = []  # the status of every answer given, while record_requests is on
        self.streamed: list[bytes] = []  # every whole stream sent, while record_requests is on
        self.base_url = ""
        self.record_requests = True
        self.slow_delay = 0.5
        self.abort_after_events = 4
        self.event_delay = 0.0  # seconds before each streamed event
        self.tail_delay = 0.0  # seconds between a stream's last event and its end
        # A hung upstream: after this many events the stream stays open and sends nothing more
        # (no ping, no end) until the caller goes away.
        self.stall_after_events: int | None = None
        self.streams_cut_by_client = 0
        self.valid_keys: set[str] | None = None  # None: any non-empty key is accepted
        self.require_auth = True  # False: answer without any credential, as a self-hosted server does
        self.anthropic = AnthropicWire()
        self.openai = OpenAIWire()
        # The Responses API and Gemini live in their own modules (which build on this one).
        from tests.fakes import gemini_wire, responses_wire

        self.responses = responses_wire.ResponsesWire()
        self.gemini = gemini_wire.GeminiWire()
        self._serve_responses, self._serve_gemini = responses_wire.serve, gemini_wire.serve
        self._gemini_path = gemini_wire.GEMINI_PATH
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024, middlewares=[self._record_status])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and getattr(server, "sockets", None)
        bound = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        self.base_url = f"http://{host}:{bound[1]}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reset(self) -> None:
        """Forget recorded requests and scripted behaviour."""
        with self._lock:
            self.requests.clear()
            self.statuses.clear()
            self.streamed.clear()
            self._failures.clear()
        self.valid_keys = None
        self.require_auth = True
        self.slow_delay = 0.5
        self.event_delay = 0.0
        self.tail_delay = 0.0
        self.stall_after_events = None
        self.streams_cut_by_client = 0

    def fail_next(
        self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``body``, else the provider's usual error body)."""
        with self._lock:
            for _ in range(times):
                self._failures.append(_Failure(status, body, dict(headers or {})))

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    # -- dispatch ----------------------------------------------------------------------------------------------------

    @web.middleware
    async def _record_status(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if self.record_requests:
            with self._lock:
                self.statuses.append(response.status)
        return response

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if self.record_requests:
            recorded = RecordedRequest(
                request.method, request.path, request.query_string, headers, body, request.raw_path.partition("?")[0]
            )
            with self._lock:
                self.requests.append(recorded)
        gemini = self._gemini_path.match(request.path) if request.method == "POST" else None
        if gemini is not None:
            return await self._serve_gemini(self, request, body, headers, gemini.group(1), gemini.group(2))
        route = _ROUTES.get((request.method, request.path))
        style = _ANTHROPIC if route in ("messages", "count_tokens") else _OPENAI
        if route == "models" and ("anthropic-version" in headers or "x-api-key" in headers):
            style = _ANTHROPIC

        failure = self._take_failure()
        if failure is not None:
            return self._scripted(failure, style)
        if route is None:
            return self._not_found(request, style)

        denied = self._check_auth(headers, style)
        if denied is not None:
            return denied
        if route == "models":
            return self._json(style, 200, self.anthropic.models if style == _ANTHROPIC else self.openai.models)

        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return self._bad_request(style, "There was an error parsing the body: the body is not a JSON object.")
        model = doc.get("model")
        if not isinstance(model, str) or not model:
            if style == _ANTHROPIC:
                return self._bad_request(style, "model: Field required")
            return self._bad_request(style, "you must provide a model parameter")

        scripted = self._model_failure(model, style)
        if scripted is not None:
            return scripted
        if "slow" in model:
            await self._slow()

        if route == "messages":
            return await self._messages(request, body, doc, model)
        if route == "count_tokens":
            refused = rules_anthropic.check_count(doc, model)
            if refused is not None:
                return self.refuse(_ANTHROPIC, refused)
            return self._json(
                _ANTHROPIC, 200, self.anthropic.count_tokens.render({"input_tokens": jint(max(1, len(body) // 4))})
            )
        if route == "chat":
            return await self._chat(request, body, doc, model)
        if route in ("responses", "input_tokens"):
            return await self._serve_responses(self, request, body, doc, model, route)
        return self._embeddings(doc, model)

    # -- auth and errors ---------------------------------------------------------------------------------------------

    async def _slow(self) -> None:
        # In small steps, re-reading the knob: a test can end the wait early (slow_delay = 0).
        started = time.monotonic()
        while (left := self.slow_delay - (time.monotonic() - started)) > 0:  # noqa: ASYNC110 - a knob set from another thread
            await asyncio.sleep(min(left, 0.05))

    def _check_auth(self, headers: Mapping[str, str], style: str) -> web.Response | None:
        if not self.require_auth:
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if style == _ANTHROPIC:
            # API keys come in `x-api-key`; recent SDKs (anthropic-python 2.x) send them as `Authorization: Bearer`.
            key = headers.get("x-api-key", "").strip() or token
            if not key:
                return self._anthropic_error(401, "error_authentication")
            if self.valid_keys is not None and key not in self.valid_keys:
                return self._anthropic_error(401, "error_invalid_api_key")
            if not headers.get("anthropic-version", "").strip():
                return self._anthropic_error(400, "error_invalid_request")
            return None
        if not token:
            return self._json(_OPENAI, 401, self.openai.render_error("error_missing_api_key"))
        if self.valid_keys is not None and token not in self.valid_keys:
            masked = token[:8] + "*" * max(0, len(token) - 12) + token[-4:]
            message = (
                f"Incorrect API key provided: {masked}. "
                "You can find your API key at https://platform.openai.com/account/api-keys."
            )
            return self._json(_OPENAI, 401, self.openai.render_error("error_invalid_api_key", message))
        return None

    def _model_failure(self, model: str, style: str) -> web.Response | None:
        retry = {"retry-after": "1"}
        if "error-429" in model:
            if style == _ANTHROPIC:
                return self._anthropic_error(429, "error_rate_limit", extra=retry)
            return self._json(_OPENAI, 429, self.openai.render_error("error_rate_limit"), retry)
        if "error-500" in model:
            if style == _ANTHROPIC:
                return self._anthropic_error(500, "error_api")
            return self._json(_OPENAI, 500, self.openai.render_error("error_server"))
        if "error-529" in model:
            if style == _ANTHROPIC:
                return self._anthropic_error(529, "error_overloaded")
            return self._json(_OPENAI, 503, self.openai.render_error("error_overloaded"))
        return None

    def _anthropic_error(
        self, status: int, stem: str, message: str | None = None, extra: Mapping[str, str] | None = None
    ) -> web.Response:
        request_id = anthropic_request_id()
        body = self.anthropic.render_error(stem, request_id, message)
        return self._json(_ANTHROPIC, status, body, extra, request_id=request_id)

    def _bad_request(self, style: str, message: str) -> web.Response:
        if style == _ANTHROPIC:
            return self._anthropic_error(400, "error_invalid_request", message)
        return self._json(_OPENAI, 400, self.openai.render_error("error_invalid_request", message))

    def _not_found(self, request: web.Request, style: str) -> web.Response:
        if request.headers.get("x-api-key") or request.headers.get("anthropic-version"):
            return self._anthropic_error(404, "error_not_found")
        message = f"Invalid URL ({request.method} {request.path})"
        return self._json(_OPENAI, 404, self.openai.render_error("error_not_found", message))

    def _scripted(self, failure: _Failure, style: str) -> web.Response:
        if failure.body is not None:
            body = compact_json(failure.body) if style == _ANTHROPIC else pretty_json(failure.body, indent=4)
            return self._json(style, failure.status, body, failure.headers)
        if style == _ANTHROPIC:
            stem = {
                400: "error_invalid_request",
                401: "error_invalid_api_key",
                404: "error_not_found",
                429: "error_rate_limit",
                529: "error_overloaded",
            }.get(failure.status, "error_api")
            return self._anthropic_error(failure.status, stem, extra=failure.headers)
        stem = {
            401: "error_invalid_api_key",
            404: "error_not_found",
            429: "error_rate_limit",
            503: "error_overloaded",
            400: "error_invalid_request",
        }.get(failure.status, "error_server")
        return self._json(_OPENAI, failure.status, self.openai.render_error(stem), failure.headers)

    # -- responses ---------------------------------------------------------------------------------------------------

    def _headers(self, style: str, content_type: str, request_id: str | None = None) -> dict[str, str]:
        if style == _ANTHROPIC:
            return {
                "Content-Type": content_type,
                "request-id": request_id or anthropic_request_id(),
                "anthropic-organization-id": _ANTHROPIC_ORG,
            }
        return {
            "Content-Type": content_type,
            "x-request-id": request_id or openai_request_id(),
            "openai-version": "2020-10-01",
            "openai-processing-ms": "42",
        }

    def _json(
        self,
        style: str,
        status: int,
        body: bytes,
        extra: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> web.Response:
        headers = self._headers(style, "application/json", request_id)
        if extra:
            headers.update(extra)
        return web.Response(status=status, body=body, headers=headers)

    async def _send_events(
        self, request: web.Request, style: str, events: list[bytes], model: str, error_event: bytes
    ) -> web.StreamResponse:
        headers = self._headers(style, "text/event-stream; charset=utf-8")
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        if "stream-abort" in model or "stream-error" in model:
            for event in events[: self.abort_after_events]:
                await response.write(event)
            if "stream-error" in model:
                await response.write(error_event)
                await response.write_eof()
                return response
            await _drop_connection(request)
            return response
        try:
            for sent, event in enumerate(events):
                if sent == self.stall_after_events:
                    # Silent until the caller closes the connection (aiohttp does not cancel a
                    # handler when its client leaves, and no event fires when a transport closes).
                    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                    raise ConnectionResetError("the caller closed the connection")
                if self.event_delay:
                    await asyncio.sleep(self.event_delay)
                await response.write(event)
            if self.tail_delay:
                await asyncio.sleep(self.tail_delay)
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_cut_by_client += 1  # the caller (the gateway) went away mid-stream
            raise
        await response.write_eof()
        self.record_stream(events)
        return response

    def record_stream(self, events: list[bytes]) -> None:
        """Keeps a whole stream that was sent (``streamed``), so a test can check it arrived untouched."""
        if self.record_requests:
            with self._lock:
                self.streamed.append(b"".join(events))

    async def _send_body(self, request: web.Request, style: str, body: bytes, model: str) -> web.StreamResponse:
        if "stream-abort" not in model:
            return self._json(style, 200, body)
        response = web.StreamResponse(status=200, headers=self._headers(style, "application/json"))
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        await _drop_connection(request)
        return response

    # -- Anthropic ---------------------------------------------------------------------------------------------------

    def anthropic_reply(self, doc: Mapping[str, Any], body: bytes, model: str) -> AnthropicReply:
        messages = doc.get("messages")
        if not isinstance(messages, list):
            messages = []
        text = echo_text(messages)
        tools = [t for t in doc.get("tools") or [] if isinstance(t, dict) and t.get("name")]
        raw_choice = doc.get("tool_choice")
        choice: dict[str, Any] = raw_choice if isinstance(raw_choice, dict) else {}
        forced = choice.get("type") in ("any", "tool")
        tool: ToolUse | None = None
        if tools and choice.get("type") != "none" and (forced or TOOL_TRIGGER in _last_message_text(messages).lower()):
            chosen = next((t for t in tools if t["name"] == choice.get("name")), None) or _named_in(
                tools, _last_message_text(messages)
            )
            tool = ToolUse(
                anthropic_tool_id(),
                chosen["name"],
                tool_input_for(chosen.get("input_schema"), last_user_text(messages)),
            )
        output = max(1, len(text) // 4)
        if tool is not None:
            output += max(1, len(json.dumps(tool.input)) // 4) + 40
        thinking: tuple[str, str] | None = None
        if isinstance(doc.get("thinking"), dict) and doc["thinking"].get("type") in ("enabled", "adaptive"):
            # Claude answers extended (or adaptive: it chooses to, here) thinking with a signed thinking block
            # first; the rules check that it comes back unchanged.
            thought = "Considering: " + last_user_text(messages)[:120]
            thinking = (thought, sign(rules_anthropic.THINKING_KIND, thought))
            output += max(1, len(thought) // 4)
        cached = b'"cache_control"' in body
        cw, cr, e5, e1 = self.anthropic.fixture_cache if cached else (0, 0, 0, 0)
        return AnthropicReply(
            model=model,
            id=anthropic_message_id(),
            text_chunks=None if forced and tool is not None else chunk_words(text, 3),
            tool=tool,
            stop_reason="tool_use" if tool is not None else "end_turn",
            input_tokens=max(1, len(body) // 4),
            output_tokens=output,
            cache_creation_input_tokens=cw,
            cache_read_input_tokens=cr,
            ephemeral_5m_input_tokens=e5,
            ephemeral_1h_input_tokens=e1,
            thinking=thinking,
        )

    def refuse(self, style: str, refusal: Refusal) -> web.Response:
        """A request the real API refuses, answered in its own error format."""
        if style == _ANTHROPIC:
            return self._anthropic_error(refusal.status, "error_invalid_request", refusal.message)
        error = {
            "message": refusal.message,
            "type": "invalid_request_error",
            "param": refusal.param,
            "code": refusal.code,
        }
        return self._json(_OPENAI, refusal.status, pretty_json({"error": error}, indent=4))

    async def _messages(self, request: web.Request, body: bytes, doc: dict[str, Any], model: str) -> web.StreamResponse:
        refused = rules_anthropic.check(doc, model)
        if refused is not None:
            return self.refuse(_ANTHROPIC, refused)
        reply = self.anthropic_reply(doc, body, model)
        if doc.get("stream") is True:
            events = self.anthropic.render_stream(reply)
            return await self._send_events(request, _ANTHROPIC, events, model, self.anthropic.stream_error)
        return await self._send_body(request, _ANTHROPIC, self.anthropic.render_message(reply), model)

    # -- OpenAI ------------------------------------------------------------------------------------------------------

    def openai_reply(self, doc: Mapping[str, Any], body: bytes, model: str) -> OpenAIReply:
        messages = doc.get("messages")
        if not isinstance(messages, list):
            messages = []
        text = echo_text(messages)
        tools = [
            t["function"]
            for t in doc.get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
        ]
        choice = doc.get("tool_choice")
        named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        forced = choice == "required" or named is not None
        tool: ToolUse | None = None
        if tools and choice != "none" and (forced or TOOL_TRIGGER in _last_message_text(messages).lower()):
            chosen = next((t for t in tools if t["name"] == named), tools[0])
            tool = ToolUse(
                openai_call_id(), chosen["name"], tool_input_for(chosen.get("parameters"), last_user_text(messages))
            )
        prompt = max(1, len(body) // 4)
        if tool is not None:
            completion = max(1, len(compact_json(tool.input)) // 4) + 10
            # OpenAI ends a call forced by name with "stop", and any other tool call with "tool_calls".
            finish = "stop" if named is not None else "tool_calls"
        else:
            completion = max(1, len(text) // 4)
            finish = "stop"
        return OpenAIReply(
            model=model,
            id=openai_completion_id(),
            created=int(time.time()),
            content_chunks=None if tool is not None else chunk_words(text, 1),
            tool=tool,
            finish_reason=finish,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=openai_cached_tokens(prompt),
        )

    async def _chat(self, request: web.Request, body: bytes, doc: dict[str, Any], model: str) -> web.StreamResponse:
        refused = rules_openai_chat.check(doc, model)
        if refused is not None:
            return self.refuse(_OPENAI, refused)
        reply = self.openai_reply(doc, body, model)
        if doc.get("stream") is True:
            options = doc.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events = self.openai.render_stream(reply, include_usage)
            return await self._send_events(request, _OPENAI, events, model, self.openai.stream_error)
        return await self._send_body(request, _OPENAI, self.openai.render_completion(reply), model)

    def _embeddings(self, doc: dict[str, Any], model: str) -> web.Response:
        wrong = shapes.wrong_field(doc, shapes.OPENAI_EMBEDDINGS)
        if wrong is not None:
            return self._bad_request(_OPENAI, shapes.openai_message(wrong))
        raw = doc.get("input")
        inputs: list[Any] = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        if raw is None or raw == [] or raw == "":
            return self._bad_request(
                _OPENAI,
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            )
        dims = doc.get("dimensions")
        if not isinstance(dims, int) or dims <= 0:
            dims = _DEFAULT_EMBEDDING_DIMS.get(model, 1536)
        as_base64 = doc.get("encoding_format") == "base64"
        vectors: list[list[float] | str] = []
        tokens = 0
        for item in inputs:
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += len(item) if isinstance(item, list) else max(1, len(text) // 4)
            vector = embedding_vector(text, dims)
            vectors.append(embedding_base64(vector) if as_base64 else vector)
        return self._json(_OPENAI, 200, self.openai.render_embeddings(model, vectors, tokens))


async def _drop_connection(request: web.Request) -> None:
    """Close the socket mid-body, as a network failure would (the client sees an incomplete response)."""
    await asyncio.sleep(0.01)
    transport = request.transport
    if transport is not None:
        transport.close()
    # Make aiohttp give up on this response quietly instead of finishing it.
    raise asyncio.CancelledError


# --------------------------------------------------------------------------------------------------------------------
# A FakeUpstream on its own event loop in a background thread, for tests that use the synchronous SDK clients
# --------------------------------------------------------------------------------------------------------------------


class FakeUpstreamThread:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = FakeUpstream()
        self.base_url = ""
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-upstream", daemon=True)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.upstream.requests

    def __enter__(self) -> FakeUpstreamThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.upstream.start(self._host, self._port), self._loop)
        self.base_url = future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.upstream.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


# --------------------------------------------------------------------------------------------------------------------
# python -m tests.fakes.upstream
# --------------------------------------------------------------------------------------------------------------------


async def _serve(host: str, port: int, record: bool) -> None:
    upstream = FakeUpstream()
    upstream.record_requests = record
    url = await upstream.start(host, port)
    print(f"fake upstream listening on {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await upstream.close()


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Anthropic + OpenAI upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--record", action="store_true", help="keep every request in memory (off by default)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(_serve(args.host, args.port, args.record))
        else:
            uvloop.run(_serve(args.host, args.port, args.record))


if __name__ == "__main__":
    main()
