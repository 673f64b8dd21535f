"""The MCP gateway while things change: a config reload reaches live sessions as list_changed
(both protocol eras), a revoked key's session ends, a crashed stdio server is restarted, and the
request log of an LLM call lists the MCP tools its session called. Real server-everything over
stdio, the official `mcp` client SDK."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import MCPError

from sluice.settings import parse_config
from tests.integration.mcp_support import EVERYTHING, connect, everything, require_servers
from tests.support import GatewayThread

ALICE, BOB = "sk-sluice-live-alice-000000000", "sk-sluice-live-bob-0000000000"


def config_with(bob_tools: list[str], tmp: Path) -> dict[str, Any]:
    return {
        "providers": {"fake": {}},
        "mcp": {"servers": [everything(health_interval_s=0.3)]},
        "virtual_keys": [
            {
                "id": "vk-alice",
                "value": ALICE,
                "mcp": {"tools": ["everything/*"]},
                "provider_configs": [{"provider": "fake"}],
            },
            {"id": "vk-bob", "value": BOB, "mcp": {"tools": bob_tools}},
        ],
        "store": {"url": f"sqlite:///{tmp / 'sluice.db'}"},
        "request_log": {"spill_path": str(tmp / "spill.jsonl")},
    }


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayThread]:
    require_servers()
    with GatewayThread(config_with(["everything/echo"], tmp_path), tmp_path) as gw:
        yield gw


async def wait_for(check: Any, within_s: float = 10) -> None:
    # Polls: what is awaited happens in the gateway's thread, where no event of ours can be set.
    with anyio.fail_after(within_s):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_a_reload_reaches_a_live_session_as_list_changed(gateway: GatewayThread, tmp_path: Path) -> None:
    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        seen.append(message)

    http, bob = connect(gateway, BOB, on_message=on_message)
    async with http, bob:
        assert [t.name for t in (await bob.list_tools()).tools] == ["everything__echo"]
        await asyncio.sleep(0.3)  # the client's standing GET stream is open
        new = parse_config(config_with(["everything/echo", "everything/get-sum"], tmp_path))
        gateway.call(gateway.services.reload_file(new, "test"))  # what SIGHUP does
        await wait_for(lambda: any(isinstance(m, types.ToolListChangedNotification) for m in seen))
        assert sorted(t.name for t in (await bob.list_tools()).tools) == ["everything__echo", "everything__get-sum"]
        assert "42" in (await bob.call_tool("everything__get-sum", {"a": 40, "b": 2})).content[0].text  # type: ignore[union-attr]


async def test_a_store_change_reaches_a_modern_listen_stream(gateway: GatewayThread, tmp_path: Path) -> None:
    http, bob = connect(gateway, BOB, mode="2026-07-28")
    async with http, bob:
        assert bob.protocol_version == "2026-07-28"
        assert [t.name for t in (await bob.list_tools()).tools] == ["everything__echo"]
        async with bob.listen(tools_list_changed=True) as events:
            key = gateway.call(gateway.services.store.key_by_id("vk-bob"))
            from dataclasses import replace

            changed = replace(key, mcp_tools=("everything/echo", "everything/get-env"))
            gateway.call(gateway.services.store.seed_config_key(changed, replace_secret=True))
            with anyio.fail_after(10):
                event = await events.__aiter__().__anext__()
            assert type(event).__name__ == "ToolsListChanged"
        assert sorted(t.name for t in (await bob.list_tools()).tools) == ["everything__echo", "everything__get-env"]


async def test_revoking_a_key_ends_its_mcp_session(gateway: GatewayThread) -> None:
    http, bob = connect(gateway, BOB)
    async with http:
        async with bob:
            await bob.list_tools()
            manager = gateway.services.mcp.manager
            sessions = [s for s, owner in manager._session_owners.items() if owner["client_id"] == "vk-bob"]
            assert len(sessions) == 1
            gateway.call(gateway.services.store.revoke_key("vk-bob", datetime.now(UTC)))
            await wait_for(lambda: sessions[0] not in manager._server_instances)
            with pytest.raises((MCPError, httpx2.HTTPError, anyio.ClosedResourceError)):
                await bob.call_tool("everything__echo", {"message": "still there?"})
    assert not [s for s, owner in manager._session_owners.items() if owner["client_id"] == "vk-bob"]
    assert len(gateway.services.mcp.sessions) == 0 or "vk-bob" not in gateway.services.mcp.sessions.key_ids()


def _children_running(script: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and str(script) in cmdline:
            found.append(int(entry))
    return found


async def test_a_crashed_stdio_server_is_restarted(gateway: GatewayThread) -> None:
    http, alice = connect(gateway, ALICE)
    async with http, alice:
        await alice.call_tool("everything__echo", {"message": "before"})
        upstream = gateway.services.mcp.catalogue.upstreams["everything"]
        (pid,) = _children_running(EVERYTHING)
        os.kill(pid, signal.SIGKILL)  # only the server this test's gateway started
        await wait_for(lambda: upstream.restarts >= 1 and upstream.client is not None)
        assert _children_running(EVERYTHING) != [pid]
        after = await alice.call_tool("everything__echo", {"message": "after the crash"})
        assert "after the crash" in after.content[0].text  # type: ignore[union-attr]


async def test_the_request_log_lists_the_mcp_tools_of_the_session(gateway: GatewayThread) -> None:
    agent = {"X-Session-Id": "agent-session-1"}
    http, alice = connect(gateway, ALICE, headers=agent)
    async with http, alice:
        await alice.call_tool("everything__echo", {"message": "one"})
        await alice.call_tool("everything__get-sum", {"a": 1, "b": 2})
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ALICE}", **agent}) as llm:
        body = {"model": "fake/echo", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(2):
            resp = await llm.post(gateway.base_url + "/v1/chat/completions", json=body)
            assert resp.status_code == 200, resp.text
    rows = sorted((r for r in gateway.request_log() if r["session_id"] == "agent-session-1"), key=lambda r: r["ts"])
    assert [r["mcp_tools"] for r in rows] == [["everything__echo", "everything__get-sum"], []]
    assert gateway.services.mcp.calls[-1]["agent_session"] == "agent-session-1"


async def test_revoking_a_key_ends_its_old_transport_sse_connection(gateway: GatewayThread) -> None:
    from mcp import Client
    from mcp.client.sse import sse_client

    mcp = gateway.services.mcp
    steps: list[str] = []
    try:
        async with Client(
            sse_client(gateway.base_url + "/sse", headers={"Authorization": f"Bearer {BOB}"}), mode="legacy", cache=None
        ) as bob:
            await bob.list_tools()
            steps.append("connected" if "vk-bob" in mcp._sse else "not tracked")
            gateway.call(gateway.services.store.revoke_key("vk-bob", datetime.now(UTC)))
            await wait_for(lambda: "vk-bob" not in mcp._sse)
            steps.append("ended")
            await bob.call_tool("everything__echo", {"message": "still there?"})
            steps.append("call went through")
    except Exception:  # the SDK reports the closed stream (or the refused POST) in its own ways
        pass
    assert steps == ["connected", "ended"]
    assert "vk-bob" not in mcp.sessions.key_ids()
