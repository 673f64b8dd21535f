"""The lean Redis client against the real Redis on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import os

import pytest

from sluice.storage.backends.resp import RedisReplyError, RedisUnavailable, RespClient, pack

DB = os.environ.get("SLUICE_TEST_REDIS_DB", "14")  # a shared machine gives each session its own
URL = f"redis://127.0.0.1:6379/{DB}"


def test_pack_is_resp() -> None:
    assert pack(("SET", "k", 12, b"\x00v")) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$2\r\n\x00v\r\n"


async def test_commands_pipelining_and_select() -> None:
    client = RespClient(URL)
    try:
        await client.call("DEL", "resp:a")
        replies = await asyncio.gather(*(client.call("INCRBY", "resp:a", 1) for _ in range(500)))
        assert sorted(replies) == list(range(1, 501))  # every reply reached its own caller
        assert f"db={DB}".encode() in await client.call("CLIENT", "INFO")
        with pytest.raises(RedisReplyError, match=r"WRONGTYPE|ERR"):
            await client.call("LPUSH", "resp:a", "x")
        assert await client.call("GET", "resp:a") == b"500"  # an error answer keeps the stream in step
    finally:
        await client.call("DEL", "resp:a")
        await client.close()


async def test_scripts_are_loaded_again_after_a_flush() -> None:
    client = RespClient(URL)
    try:
        script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
        await client.call("DEL", "resp:s")
        assert await client.eval(script, ["resp:s"], ["2"]) == 2
        await client.call("SCRIPT", "FLUSH")
        assert await client.eval(script, ["resp:s"], ["3"]) == 5
    finally:
        await client.call("DEL", "resp:s")
        await client.close()


async def test_reconnects_after_the_server_drops_the_connection() -> None:
    client = RespClient(URL)
    admin = RespClient(URL)
    try:
        own_id = await client.call("CLIENT", "ID")
        await admin.call("CLIENT", "KILL", "ID", own_id)
        await asyncio.sleep(0.05)
        assert await client.call("PING") == b"PONG"  # a fresh connection
        assert await client.call("CLIENT", "ID") != own_id
    finally:
        await client.close()
        await admin.close()


async def test_unreachable_server_and_timeouts() -> None:
    with pytest.raises(RedisUnavailable, match="cannot reach Redis"):
        await RespClient("redis://127.0.0.1:1/0", timeout=1).call("PING")
    slow = RespClient(URL, timeout=0.2)
    try:
        with pytest.raises(RedisUnavailable, match="did not answer within"):
            await slow.call("BLPOP", "resp:never", 2)  # blocks on the server longer than the timeout
        assert await slow.call("PING") == b"PONG"  # and the client recovers on a new connection
    finally:
        await slow.close()


def test_bad_url() -> None:
    with pytest.raises(ValueError, match="unsupported Redis URL scheme"):
        RespClient("rediss://example:6379/0")


async def test_pipeline_and_framed_scripts_are_one_write_each_and_stay_in_step() -> None:
    from sluice.storage.backends.resp import bulk

    client = RespClient(URL)
    try:
        await client.call("DEL", "resp:p")
        replies = await client.pipeline([("INCRBY", "resp:p", n) for n in range(1, 6)])
        assert replies == [1, 3, 6, 10, 15]
        script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
        await client.call("SCRIPT", "FLUSH")  # the framed call loads the script again by itself
        assert await client.eval_framed(script, 1, 1, bulk(b"resp:p") + bulk(b"5")) == 20
        with pytest.raises(RedisReplyError):
            await client.eval_framed(script, 1, 1, bulk(b"resp:p") + bulk(b"not a number"))
        assert await client.call("GET", "resp:p") == b"20"
    finally:
        await client.call("DEL", "resp:p")
        await client.close()
