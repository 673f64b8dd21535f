"""The MCP gateway with the official `mcp` client SDK, through Sluice, to real servers:
@modelcontextprotocol/server-everything and server-filesystem (stdio, from npm), and
SDK-written servers over Streamable HTTP and the old HTTP+SSE transport."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client, MCPError
from mcp.client.sse import sse_client

from tests.fakes.mcp_servers import UPSTREAM_TOKEN, McpServerThread
from tests.integration.mcp_support import (
    FILESYSTEM,
    audited,
    connect,
    everything,
    require_servers,
    stalled,
    tools_of,
)
from tests.support import GatewayThread

ALICE, BOB, NOBODY = "sk-sluice-mcp-alice-0000000000", "sk-sluice-mcp-bob-00000000000", "sk-sluice-mcp-none-0000000000"
CAROL, TEAMMATE, PATIENT = (
    "sk-sluice-mcp-carol-000000000",
    "sk-sluice-mcp-team-0000000000",
    "sk-sluice-mcp-wait-000000000",
)
DOCS_READER = "sk-sluice-mcp-docs-0000000000"
DOCS = "sluice://everything/demo://resource/static/document/"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    require_servers()
    tmp = tmp_path_factory.mktemp("mcp")
    shared = tmp / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("hello from the filesystem server")
    os.environ["SLUICE_TEST_UPSTREAM_AUTH"] = f"Bearer {UPSTREAM_TOKEN}"
    with McpServerThread("remote", "http") as remote, McpServerThread("legacy", "sse") as legacy:
        auth = {"Authorization": "env.SLUICE_TEST_UPSTREAM_AUTH"}  # the credential stays in the gateway
        config: dict[str, Any] = {
            "mcp": {
                "servers": [
                    everything(env={"SECRET_TOKEN": "upstream-credential-stays-here"}),
                    {"name": "fs", "transport": "stdio", "command": "node", "args": [str(FILESYSTEM), str(shared)]},
                    {"name": "remote", "transport": "http", "url": remote.url, "headers": auth},
                    {"name": "legacy", "transport": "sse", "url": legacy.url, "headers": auth},
                    {"name": "dead", "transport": "stdio", "command": "/nonexistent/server", "list_timeout_s": 1},
                    stalled("stalled", list_timeout_s=1, start_timeout_s=60),
                ],
                "tool_groups": [
                    {"name": "math", "tools": ["everything/get-sum"]},
                    {"name": "notes", "tools": ["remote/add"], "resources": ["remote/notes://readme"]},
                ],
                "rate_limits": [{"id": "add-twice", "tools": ["remote/add"], "max_calls": 2, "reset_duration": "1h"}],
            },
            "teams": [{"id": "team-docs", "mcp": {"tools": ["fs/read_text_file", "fs/list_directory"]}}],
            "virtual_keys": [
                {"id": "vk-alice", "value": ALICE, "mcp": {"tools": ["everything/echo"], "tool_groups": ["math"]}},
                {"id": "vk-bob", "value": BOB, "mcp": {"tools": ["everything/echo"]}},
                {"id": "vk-none", "value": NOBODY},
                {
                    "id": "vk-carol",
                    "value": CAROL,
                    "mcp": {"tool_groups": ["notes"], "tools": ["legacy/*"], "prompts": ["remote/review"]},
                },
                {"id": "vk-team", "value": TEAMMATE, "team_id": "team-docs", "mcp": {}},
                {"id": "vk-wait", "value": PATIENT, "mcp": {"tools": ["everything/echo", "dead/*", "stalled/*"]}},
                {
                    "id": "vk-docs",
                    "value": DOCS_READER,
                    "mcp": {"resources": ["everything/demo://resource/static/document/*"]},
                },
            ],
            "audit": {"hmac_key": "mcp-audit-key-0123456789"},
        }
        with GatewayThread(config, tmp) as gw:
            yield gw


async def test_each_key_sees_only_its_tools(gateway: GatewayThread) -> None:
    assert await tools_of(gateway, ALICE) == ["everything__echo", "everything__get-sum"]
    assert await tools_of(gateway, BOB) == ["everything__echo"]
    assert await tools_of(gateway, NOBODY) == []  # no mcp block: default deny
    assert await tools_of(gateway, CAROL) == ["legacy__add", "legacy__slow", "remote__add"]
    assert await tools_of(gateway, TEAMMATE) == ["fs__list_directory", "fs__read_text_file"]  # from the team


async def test_calls_go_through_and_denials_are_refused_and_recorded(gateway: GatewayThread) -> None:
    http, alice = connect(gateway, ALICE)
    async with http, alice:
        echoed = await alice.call_tool("everything__echo", {"message": "through sluice"})
        assert "through sluice" in echoed.content[0].text  # type: ignore[union-attr]
        summed = await alice.call_tool("everything__get-sum", {"a": 2, "b": 40})
        assert "42" in summed.content[0].text  # type: ignore[union-attr]
    http, bob = connect(gateway, BOB)
    async with http, bob:
        with pytest.raises(MCPError) as denied:
            await bob.call_tool("everything__get-sum", {"a": 1, "b": 1})
        assert denied.value.error.code == types.INVALID_PARAMS and "Unknown tool" in denied.value.error.message
        with pytest.raises(MCPError) as missing:  # the same answer for a tool that does not exist
            await bob.call_tool("everything__nope", {})
        assert missing.value.error.message == "Unknown tool: everything__nope"
    calls = [c for c in gateway.services.mcp.calls if c["virtual_key"] in ("vk-alice", "vk-bob")]
    assert [(c["kind"], c["virtual_key"], c["tool"], c["outcome"]) for c in calls[-4:]] == [
        ("mcp_call", "vk-alice", "echo", "ok"),
        ("mcp_call", "vk-alice", "get-sum", "ok"),
        ("mcp_denied", "vk-bob", "get-sum", "denied"),
        ("mcp_denied", "vk-bob", "nope", "denied"),
    ]
    ok = calls[-3]
    assert ok["session"] and ok["server"] == "everything" and ok["duration_us"] > 0
    assert calls[-2]["arguments_bytes"] > 0 and len(calls[-2]["arguments_sha256"]) == 64
    records = audited(gateway)
    assert [(r.kind, r.actor) for r in records if r.actor in ("vk-alice", "vk-bob")][-4:] == [
        ("mcp_call", "vk-alice"),
        ("mcp_call", "vk-alice"),
        ("mcp_denied", "vk-bob"),
        ("mcp_denied", "vk-bob"),
    ]
    assert "upstream-credential-stays-here" not in str([r.data for r in records])


async def test_http_and_sse_upstreams_get_the_gateway_credential(gateway: GatewayThread) -> None:
    http, carol = connect(gateway, CAROL)
    async with http, carol:
        remote = await carol.call_tool("remote__add", {"a": 1, "b": 2})
        assert remote.content[0].text == "remote: 1 + 2 = 3"  # type: ignore[union-attr]
        legacy = await carol.call_tool("legacy__add", {"a": 2, "b": 2})
        assert legacy.content[0].text == "legacy: 2 + 2 = 4"  # type: ignore[union-attr]
    assert UPSTREAM_TOKEN not in str([r.data for r in audited(gateway)])


async def test_filesystem_server_through_a_team_grant(gateway: GatewayThread) -> None:
    http, member = connect(gateway, TEAMMATE)
    async with http, member:
        listing = await member.call_tool("fs__list_directory", {"path": "."})
        assert "hello.txt" in listing.content[0].text  # type: ignore[union-attr]
        with pytest.raises(MCPError):
            await member.call_tool("fs__write_file", {"path": "x.txt", "content": "no"})


async def test_per_tool_rate_limit_refuses_and_records(gateway: GatewayThread) -> None:
    http, carol = connect(gateway, CAROL)
    async with http, carol:
        for _ in range(
            2 - sum(1 for c in gateway.services.mcp.calls if c.get("tool") == "add" and c["server"] == "remote")
        ):
            await carol.call_tool("remote__add", {"a": 1, "b": 1})
        with pytest.raises(MCPError) as limited:
            await carol.call_tool("remote__add", {"a": 1, "b": 1})
        assert limited.value.error.code == -32029 and "add-twice" in limited.value.error.message
        assert await carol.call_tool("legacy__add", {"a": 1, "b": 1})  # other tools are not limited
    last = [c for c in gateway.services.mcp.calls if c["outcome"] == "rate_limited"][-1]
    assert last["kind"] == "mcp_denied" and last["rate_limit"] == "add-twice" and last["virtual_key"] == "vk-carol"


async def test_a_dead_or_hung_server_does_not_block_the_listing(gateway: GatewayThread) -> None:
    started = time.monotonic()
    assert await tools_of(gateway, PATIENT) == ["everything__echo"]
    assert time.monotonic() - started < 5  # each waited at most its list_timeout_s (1 s), in parallel
    started = time.monotonic()
    http, client = connect(gateway, PATIENT)
    async with http, client:
        assert [t.name for t in (await client.list_tools()).tools] == ["everything__echo"]
        assert (await client.call_tool("everything__echo", {"message": "still here"})).is_error is False
    assert time.monotonic() - started < 5
    status = gateway.services.mcp.catalogue.status()
    assert status["dead"]["ready"] is False and "FileNotFoundError" in str(status["dead"]["error"])


async def test_resources_and_prompts_with_access_control(gateway: GatewayThread) -> None:
    http, carol = connect(gateway, CAROL)
    async with http, carol:
        resources = (await carol.list_resources()).resources
        assert [r.uri for r in resources] == ["sluice://remote/notes://readme"]
        read = await carol.read_resource("sluice://remote/notes://readme")
        assert read.contents[0].text == "remote readme"  # type: ignore[union-attr]
        assert read.contents[0].uri == "sluice://remote/notes://readme"
        with pytest.raises(MCPError) as denied:
            await carol.read_resource("sluice://remote/notes://secret")
        assert "Unknown resource" in denied.value.error.message
        assert [p.name for p in (await carol.list_prompts()).prompts] == ["remote__review"]
        prompt = await carol.get_prompt("remote__review", {"code": "x = 1"})
        assert "Please review: x = 1" in prompt.messages[0].content.text  # type: ignore[union-attr]
    http, bob = connect(gateway, BOB)
    async with http, bob:
        assert (await bob.list_resources()).resources == [] and (await bob.list_prompts()).prompts == []
        with pytest.raises(MCPError):
            await bob.get_prompt("remote__review", {"code": "x"})
    denied_records = [r.data for r in audited(gateway, "mcp_denied")]
    assert any(d.get("uri") == "notes://secret" for d in denied_records)


async def test_a_folder_grant_never_reaches_outside_the_folder(gateway: GatewayThread) -> None:
    """server-everything resolves `..` in the URIs it is sent (WHATWG URL parsing), so without
    normalisation a grant for its static documents read its dynamic resources."""
    http, reader = connect(gateway, DOCS_READER)
    async with http, reader:
        read = await reader.read_resource(DOCS + "architecture.md")
        assert "architecture" in read.contents[0].text.lower()  # type: ignore[union-attr]
        escapes = [
            "../../dynamic/text/1",
            "%2e%2e/%2e%2e/dynamic/text/1",
            "%2E%2E%2F%2E%2E%2Fdynamic/text/1",
            "..%2f..%2fdynamic/text/1",
            "..\\..\\dynamic\\text\\1",
            "%252e%252e/%252e%252e/dynamic/text/1",
            "architecture.md%00",
        ]
        for escape in escapes:
            with pytest.raises(MCPError) as denied:
                await reader.read_resource(DOCS + escape)
            assert "Unknown resource" in denied.value.error.message, escape
        # Another spelling of the same granted document: forwarded in its normal form.
        for spelling in ("./architecture.md", "sub/../architecture.md", "%61rchitecture.md"):
            again = await reader.read_resource(DOCS + spelling)
            assert again.contents[0].uri == DOCS + "architecture.md", spelling
        upper = await reader.read_resource("sluice://everything/DEMO://resource/static/document/architecture.md")
        assert upper.contents[0].uri == DOCS + "architecture.md"
    calls = [r.data for r in audited(gateway, "mcp_") if r.actor == "vk-docs"]
    assert all("dynamic" not in str(d.get("uri")) for d in calls if d["outcome"] != "denied")
    denied_uris = [d["uri"] for d in calls if d["outcome"] == "denied"]
    assert "demo://resource/dynamic/text/1" in denied_uris  # recorded in the normal form checked


async def test_the_old_sse_client_transport(gateway: GatewayThread) -> None:
    url = gateway.base_url + "/sse"
    async with Client(sse_client(url, headers={"Authorization": f"Bearer {ALICE}"}), mode="legacy", cache=None) as c:
        assert sorted(t.name for t in (await c.list_tools()).tools) == ["everything__echo", "everything__get-sum"]
        result = await c.call_tool("everything__echo", {"message": "over sse"})
        assert "over sse" in result.content[0].text  # type: ignore[union-attr]
        with pytest.raises(MCPError):
            await c.call_tool("remote__add", {"a": 1, "b": 1})
    assert gateway.services.mcp.calls[-2]["session"]  # the SSE session id, from the message URL


async def test_unknown_key_gets_a_plain_401(gateway: GatewayThread) -> None:
    async with httpx2.AsyncClient() as http:
        for path in ("/mcp", "/sse"):
            resp = await http.request(
                "POST" if path == "/mcp" else "GET",
                gateway.base_url + path,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"} if path == "/mcp" else None,
                headers={"Authorization": "Bearer sk-sluice-wrong"},
            )
            assert resp.status_code == 401 and "www-authenticate" not in resp.headers


def test_tool_names_stay_stable(gateway: GatewayThread, tmp_path: Path) -> None:
    # The same server and tool always give the same exposed name, across sessions and restarts.
    from sluice.mcp.access import exposed_name, split_name

    assert exposed_name("everything", "get-sum") == "everything__get-sum"
    assert split_name("fs__read__file") == ("fs", "read__file")
