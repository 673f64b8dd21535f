"""The baseline: the thinnest reasonable Python proxy, to measure the gateway against.

An aiohttp.web server on uvloop with one shared aiohttp ClientSession. ``POST /v1/messages`` forwards the body and the
end-to-end headers to the upstream and streams the answer back chunk by chunk as it arrives (keeping the upstream's
Content-Length when it has one). No parsing, no auth, no logging: whatever the gateway costs above this is governance
and its own plumbing.

Run: ``python -m bench.baseline_proxy --port 9998 --upstream http://127.0.0.1:9999``.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
from aiohttp import web

# RFC 9110 hop-by-hop headers, plus the ones each side computes for itself.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_HOP_RESPONSE = _HOP | {"date", "server"}


def build_app(upstream: str) -> web.Application:
    state: dict[str, aiohttp.ClientSession] = {}

    async def open_session(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=60)
        state["session"] = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",), trust_env=False
        )

    async def close_session(app: web.Application) -> None:
        await state["session"].close()

    async def messages(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with state["session"].post(upstream + request.path_qs, data=body, headers=headers) as up:
            resp = web.StreamResponse(
                status=up.status,
                reason=up.reason,
                headers={k: v for k, v in up.headers.items() if k.lower() not in _HOP_RESPONSE},
            )
            if up.content_length is not None:
                resp.content_length = up.content_length
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def health(request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application()
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/healthz", health)
    return app


async def serve(port: int, upstream: str) -> None:
    runner = web.AppRunner(build_app(upstream.rstrip("/")), access_log=None)
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
    parser.add_argument("--upstream", required=True, help="base URL of the upstream, e.g. http://127.0.0.1:9999")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
