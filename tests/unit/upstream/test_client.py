"""The shared upstream session keeps no state between callers."""

from __future__ import annotations

from aiohttp import web

from sluice.upstream.client import Timeouts, UpstreamClient


async def test_a_providers_cookie_is_never_replayed_on_the_next_call(unused_tcp_port: int) -> None:
    # A host name, not an IP: aiohttp's default jar ignores cookies from IP addresses.
    # Fails without the fix: aiohttp's default jar stored the cookie and sent it with every later
    # request of every tenant through the process's one session.
    seen: list[str | None] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("cookie"))
        resp = web.json_response({"ok": True})
        resp.set_cookie("__cf_bm", "tenant-a-session", path="/")
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "localhost", unused_tcp_port).start()
    client = UpstreamClient()
    try:
        for _ in range(2):
            resp = await client.post("p", f"http://localhost:{unused_tcp_port}/v1/messages", {}, b"{}", Timeouts())
            assert await resp.read() == b'{"ok": true}'
    finally:
        await client.close()
        await runner.cleanup()
    assert seen == [None, None]
