"""Connection slots and the client's saturation paths, without a network where none is needed."""

from __future__ import annotations

import asyncio
import errno
import gc
import socket

import pytest
from aiohttp import web

from sluice.core.errors import ErrorKind, SluiceError
from sluice.upstream.client import Timeouts, UpstreamClient
from sluice.upstream.pool import PoolLimits, SlotGate


async def test_a_full_gate_waits_then_refuses_as_the_gateway() -> None:
    gate = SlotGate(PoolLimits(max_connections=1, wait=0.05))
    release = await gate.acquire("p")
    assert gate.in_use == 1
    with pytest.raises(SluiceError) as refused:
        await gate.acquire("p")
    assert refused.value.kind is ErrorKind.GATEWAY_SATURATED
    assert refused.value.kind.fault == "gateway"  # what the engine's breakers count is "provider"
    assert refused.value.retry_after == 1.0
    assert gate.waiting == 0
    waiter = asyncio.create_task(gate.acquire("p"))
    await asyncio.sleep(0.01)
    assert gate.waiting == 1
    release()
    release()  # twice: given back once, so the cap still holds
    second = await waiter
    assert gate.in_use == 1
    with pytest.raises(SluiceError):
        await gate.acquire("p")
    second()
    assert gate.in_use == 0


async def test_an_uncapped_gate_only_counts() -> None:
    gate = SlotGate(PoolLimits())
    releases = [await gate.acquire("p") for _ in range(1000)]
    assert gate.in_use == 1000
    for release in releases:
        release()
    assert gate.in_use == 0


async def test_out_of_sockets_is_gateway_saturation_not_an_unreachable_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fails without the fix: EMFILE on connect was PROVIDER_UNREACHABLE, a provider fault that
    # opened the breaker of a provider that was never asked.
    def no_fds(*args: object, **kwargs: object) -> socket.socket:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(socket, "socket", no_fds)
    client = UpstreamClient()
    try:
        with pytest.raises(SluiceError) as err:
            await client.post("anthropic", "http://127.0.0.1:9/v1/messages", {}, b"{}", Timeouts(first_byte=5))
    finally:
        monkeypatch.undo()
        await client.close()
    assert err.value.kind is ErrorKind.GATEWAY_SATURATED
    assert client.saturated == {("anthropic", "sockets"): 1}


async def test_a_refused_connection_is_still_the_providers() -> None:
    client = UpstreamClient()
    try:
        with pytest.raises(SluiceError) as err:
            await client.post("p", "http://127.0.0.1:9/x", {}, b"{}", Timeouts(connect=1, first_byte=5))
    finally:
        await client.close()
    assert err.value.kind is ErrorKind.PROVIDER_UNREACHABLE
    assert client.gates()["p"].in_use == 0  # the slot of a failed send is given back


async def test_a_stream_holds_its_slot_until_read_or_dropped(unused_tcp_port: int) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(3):
            await resp.write(b"data: x\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/s", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    client = UpstreamClient()
    client.set_pool("p", PoolLimits(max_connections=1, wait=0.05))
    url = f"http://127.0.0.1:{unused_tcp_port}/s"
    try:
        resp = await client.post("p", url, {}, b"{}", Timeouts())
        with pytest.raises(SluiceError) as full:
            await client.post("p", url, {}, b"{}", Timeouts())
        assert full.value.kind is ErrorKind.GATEWAY_SATURATED
        assert b"".join([c async for c in resp.iter_chunks()]) == b"data: x\n\n" * 3
        assert client.gates()["p"].in_use == 0
        # A stream nobody iterates (an error between send and first read) gives its slot back
        # when it is dropped, instead of holding it for the life of the process.
        dropped = await client.post("p", url, {}, b"{}", Timeouts())
        assert client.gates()["p"].in_use == 1
        dropped.close()
        assert client.gates()["p"].in_use == 0
        forgotten = await client.post("p", url, {}, b"{}", Timeouts())
        del forgotten
        gc.collect()
        assert client.gates()["p"].in_use == 0
    finally:
        await client.close()
        await runner.cleanup()


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    import resource

    from sluice.upstream.fds import raise_open_files_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_open_files_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
        assert raise_open_files_limit() == hard  # already there: unchanged
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_live_reload_keeps_an_unchanged_pool_and_replaces_a_changed_one() -> None:
    client = UpstreamClient()
    client.set_pool("p", PoolLimits(max_connections=1, wait=0.01))
    gate = client.gates()["p"]
    release = await gate.acquire("p")
    client.set_pool("p", PoolLimits(max_connections=1, wait=0.01))  # the same settings: the same slots
    assert client.gates()["p"] is gate and gate.in_use == 1
    client.set_pool("p", PoolLimits(max_connections=5, wait=0.01))  # raised: new requests get the new cap
    fresh = client.gates()["p"]
    assert fresh is not gate and fresh.limits.max_connections == 5
    release()  # the old request gives its slot back to the gate it came from
    assert gate.in_use == 0 and fresh.in_use == 0


def test_stalled_time_is_the_overlap_of_stalls_with_the_window() -> None:
    from sluice.upstream.lag import LoopLag

    lag = LoopLag()
    lag._stalls.extend([(10.0, 1.0), (20.0, 4.0), (30.5, 0.5)])  # stalls over [9,10], [16,20], [30,30.5]
    assert lag.stalled(0, 100) == 5.5
    assert lag.stalled(15, 18) == 2.0  # part of the second stall
    assert lag.stalled(21, 29) == 0.0
    assert lag.overloaded(15, 23)  # 4 s stalled of 8: the gateway's fault
    assert not lag.overloaded(0, 100)  # 5.5 s of 100: the provider's
