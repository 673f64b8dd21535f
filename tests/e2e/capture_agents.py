"""Fake OpenAI-Responses and Gemini endpoint that records what an agent CLI (Codex, Gemini CLI) sends.

Research helper, not a pytest module (the Claude Code counterpart is capture_claude.py). Usage:

    python -m tests.e2e.capture_agents --log-dir /tmp/cap [--port 0] [--port-file /tmp/cap/port] \
        [--error-status 429 --error-code insufficient_quota --error-message "..."] [--tool-call NAME --tool-args JSON]

With --tool-call, the first model request is answered with that one tool call (a Responses
``function_call`` or a Gemini ``functionCall``) and the later ones with text, so the capture shows how
the CLI sends a tool result back.

Every request is written to ``<log-dir>/NNN.json`` (method, path+query, headers, parsed body) and,
when it has one, ``<log-dir>/NNN.body`` byte-exact.

Answers (the path prefix is free, so any base URL pointed here works):
  * POST .../responses                   -> Responses SSE stream (or JSON when "stream" is false)
  * POST .../responses/input_tokens      -> {"object": "response.input_tokens", "input_tokens": 10}
  * POST .../models/M:streamGenerateContent -> Gemini SSE chunks
  * POST .../models/M:generateContent    -> Gemini JSON
  * POST .../models/M:countTokens        -> {"totalTokens": 10}
  * GET  .../models                      -> an empty model list in either vendor's shape
  * anything else                        -> 404
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from sluice.core.canonical import ChatRequest, ChatResponse, Part, Text, ToolCall
from sluice.core.types import Usage, WireFormat
from sluice.formats.codec_support import response_events, stamp_created
from sluice.formats.codecs import codec_for
from sluice.formats.gemini import wire as gemini

REPLY_TEXT = "hello from fake"


class Capture:
    def __init__(
        self,
        log_dir: Path,
        error_status: int = 0,
        error_message: str = "",
        tool_call: ToolCall | None = None,
        error_code: str = "",
    ) -> None:
        self.log_dir = log_dir
        self.tool_call = tool_call
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.counter = itertools.count(1)
        self.t0 = time.monotonic()
        self.error_status = error_status
        self.error_message = error_message
        self.error_code = error_code

    def _record(self, request: web.Request, body: bytes) -> None:
        n = next(self.counter)
        entry: dict[str, Any] = {
            "n": n,
            "t": round(time.monotonic() - self.t0, 3),
            "method": request.method,
            "path_qs": request.path_qs,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_len": len(body),
        }
        try:
            entry["body_json"] = json.loads(body) if body else None
        except ValueError:
            entry["body_text"] = body.decode("utf-8", "replace")
        (self.log_dir / f"{n:03d}.json").write_text(json.dumps(entry, indent=2))
        if body:
            (self.log_dir / f"{n:03d}.body").write_bytes(body)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        path = request.path
        if request.method == "GET" and path.endswith("/models"):
            return web.json_response({"object": "list", "data": [], "models": []})
        if request.method != "POST":
            return web.json_response({"error": {"message": f"not found: {path}"}}, status=404)
        if self.error_status:
            return self._error(path)
        payload = json.loads(body or b"{}")
        if path.endswith("/responses/input_tokens"):
            return web.json_response({"object": "response.input_tokens", "input_tokens": 10})
        if path.endswith("/responses"):
            done = self._answer("resp_fake0123456789abcdef0123", payload.get("model", "?"))
            if payload.get("stream"):
                return await _stream(request, _events(WireFormat.OPENAI_RESPONSES, done))
            return _whole(WireFormat.OPENAI_RESPONSES, done)
        if "/models/" in path:
            model, _, method = path.rsplit("/", 1)[-1].partition(":")
            if method == "countTokens":
                return web.json_response({"totalTokens": 10})
            done = self._answer("fake-response-id", model)
            schema = (payload.get("generationConfig") or {}).get("responseJsonSchema")
            if schema and done.stop_reason != "tool_use":
                # Gemini CLI's model router asks for JSON of a schema; answer with a minimal instance.
                done.content = [Text(json.dumps(_instance(schema)))]
            if method == "streamGenerateContent":
                return await _stream(request, _events(WireFormat.GEMINI, done))
            if method == "generateContent":
                return _whole(WireFormat.GEMINI, done)
        return web.json_response({"error": {"message": f"not found: {path}"}}, status=404)

    def _answer(self, response_id: str, model: str) -> ChatResponse:
        if self.tool_call is not None:
            call, self.tool_call = self.tool_call, None
            return ChatResponse(response_id, model, [call], "tool_use", usage=Usage(10, 4))
        content: list[Part] = [Text(REPLY_TEXT)]
        return ChatResponse(response_id, model, content, usage=Usage(10, 4))

    def _error(self, path: str) -> web.Response:
        if "/models/" in path:
            return web.Response(
                body=gemini.error_body(self.error_status, self.error_message),
                status=self.error_status,
                content_type="application/json",
            )
        code = self.error_code or str(self.error_status)
        error = {"message": self.error_message, "type": self.error_code or "error", "code": code, "param": None}
        return web.json_response({"error": error}, status=self.error_status)


def _instance(schema: dict[str, Any]) -> Any:
    kind = str(schema.get("type", "object")).lower()
    if kind == "object":
        return {name: _instance(sub) for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return []
    return {"string": "simple", "integer": 1, "number": 1, "boolean": False}.get(kind)


# Answers are written the one way answers are written in every format: canonical types through the
# format's codec (sluice.formats), as the gateway's translation bridge writes them.


def _whole(wire: WireFormat, answer: ChatResponse) -> web.Response:
    body = orjson.dumps(codec_for(wire).encode_response(answer, ChatRequest(answer.model, [])))
    return web.Response(body=stamp_created(body, int(time.time())), content_type="application/json")


def _events(wire: WireFormat, answer: ChatResponse) -> list[bytes]:
    encoder = codec_for(wire).stream_encoder(ChatRequest(answer.model, [], stream=True))
    chunks = [encoder.encode(event) for event in response_events(answer)] + [encoder.close()]
    return [stamp_created(chunk, int(time.time())) for chunk in chunks if chunk]


async def _stream(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    for event in events:
        await response.write(event)
        await asyncio.sleep(0)
    await response.write_eof()
    return response


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--log-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--error-status", type=int, default=0)
    p.add_argument("--error-message", default="refused by the capture server")
    p.add_argument("--error-code", default="", help="OpenAI error code/type, e.g. insufficient_quota")
    p.add_argument("--tool-call", help="answer the first model request with a call of this tool")
    p.add_argument("--tool-args", default="{}", help="its arguments, JSON")
    args = p.parse_args()

    call = ToolCall("call_fake0123456789", args.tool_call, args.tool_args) if args.tool_call else None
    capture = Capture(Path(args.log_dir), args.error_status, args.error_message, call, args.error_code)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", capture.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    if args.port_file:
        Path(args.port_file).write_text(str(port))
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
