"""The shared upstream session keeps no state between callers."""

from __future__ import annotations

import asyncio

import pytest
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


async def _fast_server(port: int) -> web.AppRunner:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/messages", answer)
    app.router.add_post("/slow", hang)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_a_timeout_the_gateways_stalled_event_loop_caused_is_not_the_providers(unused_tcp_port: int) -> None:
    # Fails without the fix: the provider answered at once, but the gateway's loop was blocked past
    # the first-byte deadline, so the answer was read too late and PROVIDER_TIMEOUT opened the
    # breaker of a healthy provider (what a CPU-saturated gateway does to every request in flight).
    import time

    from sluice.core.errors import ErrorKind, SluiceError

    runner = await _fast_server(unused_tcp_port)
    client = UpstreamClient()
    await client.start()
    try:
        await asyncio.sleep(0.15)  # the loop monitor has a first sample
        url = f"http://127.0.0.1:{unused_tcp_port}/v1/messages"
        sent = asyncio.ensure_future(client.post("p", url, {}, b"{}", Timeouts(first_byte=0.3)))
        await asyncio.sleep(0)  # the request is on its way ...
        time.sleep(0.5)  # ... and the gateway stalls, as under CPU saturation
        try:
            await sent
            raise AssertionError("expected the stalled request to time out")
        except SluiceError as err:
            assert err.kind is ErrorKind.GATEWAY_SATURATED, err
            assert "event loop" in err.message
        assert client.saturated == {("p", "loop"): 1}
        # A provider that is really slow, on a responsive loop, is still the provider's timeout.
        with pytest.raises(SluiceError) as slow:
            await client.post("p", f"http://127.0.0.1:{unused_tcp_port}/slow", {}, b"{}", Timeouts(first_byte=0.3))
        assert slow.value.kind is ErrorKind.PROVIDER_TIMEOUT
    finally:
        await client.close()
        await runner.cleanup()


def test_urls_are_parsed_once_sent_as_built_and_the_cache_stays_bounded() -> None:
    from sluice.upstream import h1

    url = "http://127.0.0.1:1/model/a%3Ab/invoke?x=%2E%2E"
    assert h1.target_of(url) is h1.target_of(url)
    assert h1.target_of(url).path == "/model/a%3Ab/invoke?x=%2E%2E"  # not decoded again (SigV4 signs these bytes)
    for i in range(h1._MAX_CACHED * 2):  # a caller's models can make new URLs without end
        h1.target_of(f"http://127.0.0.1:1/model/m{i}/invoke")
    assert len(h1._targets) <= h1._MAX_CACHED
