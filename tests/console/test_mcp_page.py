"""The MCP page: servers with their health as this process knows it (a real stdio server from
npm, and one that cannot start), their tools, tool groups, and who is granted what through keys,
teams and access profiles, calls per server."""

from __future__ import annotations

import asyncio
import re
import sys

from sluice.app import Services
from sluice.http.server import SluiceASGI
from tests.admin.conftest import BOOTSTRAP, Client
from tests.console.conftest import Browser, role_token
from tests.integration.mcp_support import EVERYTHING, require_servers


async def signed_in(app: SluiceASGI, token: str) -> Browser:
    b = Browser(app)
    assert (await b.sign_in(token)).status == 303
    return b


async def test_servers_health_tools_and_grants(gateway: tuple[Services, SluiceASGI]) -> None:
    require_servers()
    services, app = gateway
    api = Client(app)
    good = {"name": "everything", "transport": "stdio", "command": "node", "args": [str(EVERYTHING), "stdio"]}
    bad = {
        "name": "broken",
        "transport": "stdio",
        "command": sys.executable,
        "args": ["-c", "import sys; sys.stderr.write('no such database'); sys.exit(3)"],
    }
    remote = {"name": "remote", "transport": "http", "url": "https://mcp.example:8443/mcp"}
    for server in (good, bad, remote):
        assert (await api.put(f"/api/mcp-servers/{server['name']}", json=server)).status == 200
    group = {"name": "readers", "tools": ["everything/echo", "everything/get-sum"]}
    assert (await api.put("/api/tool-groups/readers", json=group)).status == 200
    team = {"id": "team-m", "mcp": {"tool_groups": ["readers"]}}
    assert (await api.post("/api/teams", json=team)).status == 201
    profile = {
        "id": "mcp-devs",
        "groups": ["eng"],
        "provider_configs": [{"provider": "fake"}],
        "mcp": {"tools": ["everything/*"]},
    }
    assert (await api.post("/api/access-profiles", json=profile)).status == 201
    assert (
        await api.post("/api/keys", json={"id": "vk-pm", "user_id": "u-pm", "profile_id": "mcp-devs"})
    ).status == 201
    assert (await api.post("/api/keys", json={"id": "vk-tm", "team_id": "team-m"})).status == 201

    b = await signed_in(app, BOOTSTRAP)
    before = await b.get("/console/mcp")
    assert before.status == 200
    row = before.text.split("<td>everything</td>")[1].split("</tr>")[0]
    assert 'class="health-idle">idle' in row and "never" in row  # nothing started it yet
    # Start both (as a first MCP request would) and wait for each to settle.
    for name in ("everything", "broken"):
        upstream = services.mcp.catalogue.get(name)
        assert upstream is not None
        await upstream.wait_ready(20)
        for _ in range(100):
            if not upstream.running:
                break
            if upstream.client is not None:
                break
            await asyncio.sleep(0.05)
    page = await b.get("/console/mcp")
    servers = page.text.split('id="servers-h"')[1].split("</table>")[0]
    row = servers.split("<td>everything</td>")[1].split("</tr>")[0]
    assert 'class="health-connected">connected' in row
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert int(cells[0]) > 0 and cells[1].endswith(" ms"), cells  # tools, latency
    row = servers.split("<td>broken</td>")[1].split("</tr>")[0]
    assert 'class="health-down">down' in row and "1 failure in a row" in row
    row = servers.split("<td>remote</td>")[1].split("</tr>")[0]
    assert "https://mcp.example:8443/mcp" in row
    assert "<code>everything__echo</code>" in page.text  # its tools, by the name clients see
    groups = page.text.split("<caption>Tool groups</caption>")[1].split("</table>")[0]
    assert "<td>readers</td><td>everything/echo, everything/get-sum</td>" in groups
    teams = page.text.split("Teams' grants")[1].split("</table>")[0]
    assert re.search(r"<td>team-m</td><td class=\"num\">1</td><td></td><td>readers</td>", teams), teams
    profiles = page.text.split("Access profiles' grants")[1].split("</table>")[0]
    assert re.search(r"<td>mcp-devs</td><td class=\"num\">1</td><td></td><td>everything/\*</td>", profiles), profiles
    # A developer cannot read the page; a viewer sees servers and grants but no calls.
    assert (await (await signed_in(app, role_token("developer", "", "u-pm"))).get("/console/mcp")).status == 403
    viewer = await (await signed_in(app, role_token("viewer"))).get("/console/mcp")
    assert "<td>everything</td>" in viewer.text and "they need <code>audit.read</code>" in viewer.text


async def test_calls_per_server_with_their_median_duration(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    for us, outcome in ((1000, "ok"), (3000, "ok"), (9000, "timeout")):
        await services.audit.append(
            "mcp_call", "vk-c", {"server": "s1", "tool": "t", "outcome": outcome, "duration_us": us}
        )
    await services.audit.append("mcp_denied", "vk-c", {"server": "s1", "tool": "x", "outcome": "denied"})
    await services.audit.drain()
    page = await (await signed_in(app, BOOTSTRAP)).get("/console/mcp")
    per_server = page.text.split("Calls and denials per server")[1].split("</table>")[0]
    assert re.search(
        r'<td>s1</td><td class="num">3</td><td class="num">1</td><td class="num">1</td><td class="num">3.0 ms</td>',
        per_server,
    ), per_server


def test_a_servers_address_is_shown_without_its_credentials() -> None:
    from sluice.http.console.mcp_page import where
    from sluice.settings import McpServerConfig

    cfg = McpServerConfig(name="r", transport="http", url="https://svc:pw-secret-1@mcp.example:8443/mcp?token=tok-2#f")
    assert where(cfg) == "https://mcp.example:8443/mcp"
    stdio = McpServerConfig(name="s", transport="stdio", command="node", args=["--token", "tok-3"])
    assert where(stdio) == "node"
