"""A fast fake Anthropic Messages upstream for benchmarks: every answer is precomputed bytes.

``POST /v1/messages`` answers a JSON message, or, when the request body has ``"stream": true``, the exact Anthropic SSE
sequence (message_start, content_block_start, ping, content_block_delta x N, content_block_stop, message_delta with
usage, message_stop), each event written separately as a real provider does. Per request it only reads the body, parses
it (orjson) and checks that a credential is present; nothing else is computed.

Run: ``python -m bench.upstream --port 9999 [--deltas 20]``.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
from aiohttp import web

MODEL = "claude-sonnet-4-5-20250929"
_USAGE_START = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 1,
    "service_tier": "standard",
}
_REQUEST_ID = "req_011CbenchBenchBenchBench0"


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _words(deltas: int) -> list[str]:
    return ["Hello" if i == 0 else f" word{i}" for i in range(deltas)]


def json_body(deltas: int = 20) -> bytes:
    """The non-streaming answer (same text and usage as the stream)."""
    text = "".join(_words(deltas))
    doc = {
        "model": MODEL,
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {**_USAGE_START, "output_tokens": deltas},
    }
    return orjson.dumps(doc)


def stream_events(deltas: int = 20) -> list[bytes]:
    """The streamed answer, one bytes object per SSE event."""
    start = {
        "type": "message_start",
        "message": {
            "model": MODEL,
            "id": "msg_01HCDu5LRGeP2o7s2xGmxyFE",
            "type": "message",
            "role": "assistant",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _USAGE_START,
        },
    }
    events = [
        _event("message_start", orjson.dumps(start)),
        _event(
            "content_block_start",
            orjson.dumps({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        _event("ping", b'{"type": "ping"}'),
    ]
    for word in _words(deltas):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}
        events.append(_event("content_block_delta", orjson.dumps(delta)))
    events.append(_event("content_block_stop", b'{"type":"content_block_stop","index":0}'))
    message_delta = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": deltas,
        },
    }
    events.append(_event("message_delta", orjson.dumps(message_delta)))
    events.append(_event("message_stop", b'{"type":"message_stop"}'))
    return events


_UNAUTHORIZED = orjson.dumps(
    {"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}}
)


def build_app(deltas: int) -> web.Application:
    body = json_body(deltas)
    events = stream_events(deltas)
    json_headers = {"content-type": "application/json", "request-id": _REQUEST_ID}
    sse_headers = {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "request-id": _REQUEST_ID,
    }

    async def messages(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        if not (request.headers.get("x-api-key") or request.headers.get("authorization")):
            return web.Response(status=401, body=_UNAUTHORIZED, content_type="application/json")
        doc = orjson.loads(raw)
        if doc.get("stream") is not True:
            return web.Response(body=body, headers=json_headers)
        resp = web.StreamResponse(headers=sse_headers)
        await resp.prepare(request)
        for ev in events:
            await resp.write(ev)
        await resp.write_eof()
        return resp

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/healthz", health)
    return app


async def serve(port: int, deltas: int) -> None:
    runner = web.AppRunner(build_app(deltas), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--deltas", type=int, default=20, help="content_block_delta events per stream")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.deltas))


if __name__ == "__main__":
    main()
