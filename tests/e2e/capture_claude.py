"""Fake Anthropic endpoint that records what a client (Claude Code) sends.

Research helper, not a pytest module. Usage:

    python tests/e2e/capture_claude.py --log-dir /tmp/cap [--port 0] \
        [--port-file /tmp/cap/port] [--error-status 403 --error-type permission_error \
         --error-message "..."] [--retry-after 1]

Every request is written to ``<log-dir>/NNN.json`` with method, path+query,
headers, body (parsed JSON when possible) and a timestamp; non-empty bodies are
also written byte-exact to ``<log-dir>/NNN.body``.

Answers:
  * HEAD/GET anything                  -> 200 (or --head-status), empty body
  * POST /v1/messages/count_tokens*    -> {"input_tokens": 10}
  * POST /v1/messages*                 -> Anthropic Message (SSE when "stream": true),
                                          or the configured error
  * anything else                      -> 404 Anthropic error body
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

REPLY_TEXT = "hello from fake"


def _error_body(err_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": err_type, "message": message}}


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class Capture:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log_dir = Path(args.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.counter = itertools.count(1)
        self.t0 = time.monotonic()

    def _record(self, request: web.Request, body: bytes) -> int:
        n = next(self.counter)
        entry: dict[str, Any] = {
            "n": n,
            "t": round(time.monotonic() - self.t0, 3),
            "wall": time.time(),
            "method": request.method,
            "path_qs": request.path_qs,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body_len": len(body),
            "body_text": body.decode("utf-8", "replace"),
        }
        try:
            entry["body_json"] = json.loads(body) if body else None
            entry.pop("body_text")
        except ValueError:
            pass
        (self.log_dir / f"{n:03d}.json").write_text(json.dumps(entry, indent=2))
        if body:
            (self.log_dir / f"{n:03d}.body").write_bytes(body)  # raw, byte-exact
        return n

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self._record(request, body)
        path = request.path
        if request.method in ("HEAD", "GET"):
            return web.Response(status=self.args.head_status)
        if request.method == "POST" and path.startswith("/v1/messages/count_tokens"):
            return web.json_response({"input_tokens": 10})
        if request.method == "POST" and path.startswith("/v1/messages"):
            if self.args.error_status:
                headers = {"request-id": "req_fake_" + uuid.uuid4().hex[:12]}
                if self.args.retry_after is not None:
                    headers["retry-after"] = str(self.args.retry_after)
                return web.json_response(
                    _error_body(self.args.error_type, self.args.error_message),
                    status=self.args.error_status,
                    headers=headers,
                )
            try:
                payload = json.loads(body or b"{}")
            except ValueError:
                return web.json_response(_error_body("invalid_request_error", "body is not JSON"), status=400)
            model = payload.get("model", "claude-fake")
            if payload.get("stream"):
                return await self._stream(request, model)
            return web.json_response(self._message(model))
        return web.json_response(_error_body("not_found_error", f"Not found: {request.method} {path}"), status=404)

    @staticmethod
    def _message(model: str) -> dict[str, Any]:
        return {
            "id": "msg_fake_" + uuid.uuid4().hex[:20],
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": REPLY_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 4},
        }

    async def _stream(self, request: web.Request, model: str) -> web.StreamResponse:
        resp = web.StreamResponse(
            status=200,
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
                "request-id": "req_fake_" + uuid.uuid4().hex[:12],
            },
        )
        await resp.prepare(request)
        msg = self._message(model)
        msg["content"] = []
        msg["stop_reason"] = None
        msg["usage"] = {"input_tokens": 10, "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": msg}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello "}},
            ),
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "from fake"}},
            ),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 4},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for event, data in events:
            await resp.write(_sse(event, data))
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp


def _write_port_file(path: str, port: int) -> None:
    Path(path).write_text(str(port))


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--log-dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--error-status", type=int, default=0)
    p.add_argument("--error-type", default="permission_error")
    p.add_argument(
        "--error-message",
        default="Model 'claude-opus-4-1' is not allowed for virtual key 'vk-test'.",
    )
    p.add_argument("--retry-after", type=int, default=None)
    p.add_argument("--head-status", type=int, default=200, help="status for HEAD/GET")
    args = p.parse_args()

    cap = Capture(args)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", cap.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    if args.port_file:
        _write_port_file(args.port_file, port)
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
