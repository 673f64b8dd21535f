"""The console in a real browser: Playwright driving Debian's chromium (installed by `make test`;
never `playwright install`) against a gateway on 127.0.0.1 with a real OpenID provider for single
sign-on. Saves a screenshot of each page under docs/images/ (shown in docs/console.md)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from sluice.admin.keys import KeyAdmin
from sluice.admin.kinds import KINDS
from sluice.auth.admin_tokens import create_token
from sluice.storage.records import ProviderGrant, RequestLogEntry, SpendRow, VirtualKey
from tests.integration.mcp_support import EVERYTHING
from tests.integration.oidc_support import OidcProvider
from tests.support import GatewayThread, free_port

CHROMIUM = os.environ.get("SLUICE_CHROMIUM", "/usr/bin/chromium")
# `make screenshots` (SLUICE_SCREENSHOTS=1) refreshes docs/images; otherwise they go to a temporary
# directory, so a test run leaves the tree as it found it.
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
IMAGES = DOCS_IMAGES if os.environ.get("SLUICE_SCREENSHOTS") else Path(tempfile.mkdtemp(prefix="sluice-shots-"))
SECRET = "console-client-secret-0123456789"
ACCOUNTS = {
    "dave": {"email": "dave@example.com", "name": "Dave Dev", "groups": ["engineering"]},
}
pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing: `make test` installs Debian's chromium",
)
sync_api = pytest.importorskip("playwright.sync_api")


def _entries(now: datetime) -> tuple[list[RequestLogEntry], list[SpendRow]]:
    rnd = random.Random(3)
    keys = [("vk-ana", "team-web"), ("vk-bo", "team-web"), ("vk-cy", "team-data"), ("vk-dee", "team-data")]
    models = [("claude-sonnet-4-5", "anthropic"), ("gpt-5-mini", "openai"), ("gemini-2.5-flash", "google")]
    logs, ledger = [], []
    for n in range(600):
        key, team = keys[n % 4 if n % 7 else 0]
        model, provider = models[n % 3]
        ts = now - timedelta(minutes=int(30 * 24 * 60 * (n / 600) ** 1.6))
        deny = n % 23 == 0
        limited = n % 41 == 0
        cost = 0 if deny or limited else rnd.randint(2 * 10**9, 9 * 10**10)
        status = 403 if deny else 429 if limited else 200
        kind = "policy_model_denied" if deny else "policy_rate_limited" if limited else None
        rid = f"req-{n:04d}"
        logs.append(
            RequestLogEntry(
                request_id=rid,
                ts=ts,
                path="/v1/messages",
                surface="anthropic",
                status=status,
                decision="deny" if deny or limited else "allow",
                reason="model not allowed for this key" if deny else "rate limit" if limited else None,
                error_kind=kind,
                virtual_key_id=key,
                virtual_key_name=key,
                team_id=team,
                client=["claude-cli/2.0.14", "codex_cli_rs/0.50"][n % 2],
                session_id=f"sess-{key}-{n // 25}",
                provider=provider,
                provider_key_name="primary",
                requested_model=model,
                model=model,
                stream=True,
                input_tokens=rnd.randint(800, 9000),
                output_tokens=rnd.randint(50, 900),
                cost_pico=cost,
                latency_ms=rnd.uniform(300, 4000),
                ttfb_ms=rnd.uniform(150, 900),
                attempts=[{"provider": provider, "key": "primary", "status": status}],
                route="default",
            )
        )
        if cost:
            ledger.append(SpendRow(rid, ts, key, team, None, cost, 1000))
    return logs, ledger


async def _seed(gw: GatewayThread) -> dict[str, str]:
    services = gw.services
    admin = services.admin
    group = {"name": "readers", "tools": ["everything/echo", "everything/get-sum"]}
    await admin.put(KINDS["tool_group"], KINDS["tool_group"].model.model_validate(group), "seed")
    for team, name in (("team-web", "Web"), ("team-data", "Data")):
        body: dict[str, Any] = {"id": team, "name": name}
        if team == "team-web":
            body["mcp"] = {"tool_groups": ["readers"]}
        await admin.put(KINDS["team"], KINDS["team"].model.model_validate(body), "seed")
        cap = {"id": f"cap-{team}", "team_id": team, "max_limit": "200", "reset_duration": "1M"}
        await admin.put(KINDS["budget"], KINDS["budget"].model.model_validate(cap), "seed")
    keys = KeyAdmin(admin)
    grants = (ProviderGrant("fake", 1.0, ("echo",)),)
    for key_id, team, user in (
        ("vk-ana", "team-web", "u-ana"),
        ("vk-bo", "team-web", "u-bo"),
        ("vk-cy", "team-data", "u-cy"),
        ("vk-dee", "team-data", None),
    ):
        await keys.create(VirtualKey(key_id, key_id, "", "", grants, team_id=team, user_id=user), "seed")
        body = {"id": f"b-{key_id}", "virtual_key_id": key_id, "max_limit": "40", "reset_duration": "1M"}
        await admin.put(KINDS["budget"], KINDS["budget"].model.model_validate(body), "seed")
    rates = [
        {"id": "ana-rate", "virtual_key_id": "vk-ana", "request_max_limit": 400, "request_reset_duration": "1d"},
        {"id": "ana-flight", "virtual_key_id": "vk-ana", "max_concurrent_requests": 4},
        {"id": "web-tokens", "team_id": "team-web", "token_max_limit": 300000, "token_reset_duration": "1d"},
    ]
    for rate in rates:
        await admin.put(KINDS["rate_limit"], KINDS["rate_limit"].model.model_validate(rate), "seed")
    server = {"name": "everything", "transport": "stdio", "command": "node", "args": [str(EVERYTHING), "stdio"]}
    await admin.put(KINDS["mcp_server"], KINDS["mcp_server"].model.model_validate(server), "seed")
    broken = {"name": "tickets", "transport": "http", "url": "http://127.0.0.1:9/mcp"}  # nothing listens there
    await admin.put(KINDS["mcp_server"], KINDS["mcp_server"].model.model_validate(broken), "seed")
    logs, ledger = _entries(datetime.now(UTC))
    await services.store.insert_requests(logs)
    await services.store.record_spend(ledger)
    for n in range(30):
        tool = ["echo", "get-sum", "echo", "get-env"][n % 4]
        record = {"server": "everything", "tool": tool, "virtual_key": "vk-ana", "method": "tools/call"}
        if tool == "get-env":
            await services.audit.append("mcp_denied", "vk-ana", {**record, "outcome": "denied"})
        else:
            await services.audit.append("mcp_call", "vk-ana", {**record, "outcome": "ok", "duration_us": 800 + 90 * n})
    await _traffic(services)
    for _ in range(100):  # the live configuration has the servers: start them as a first MCP call would
        upstreams = [services.mcp.catalogue.get(name) for name in ("everything", "tickets")]
        if all(upstreams):
            break
        await asyncio.sleep(0.05)
    for upstream in upstreams:
        assert upstream is not None
        await upstream.wait_ready(20)
    tokens = {}
    for token_id, roles, teams in (
        ("tok-admin", ["admin"], []),
        ("tok-auditor", ["security-auditor"], []),
        ("tok-viewer", ["viewer"], []),
        ("tok-lead", ["team-lead"], ["team-web"]),
    ):
        _, secret, _ = await create_token(services.store, token_id, token_id, roles, teams, None, "seed", None)  # type: ignore[arg-type]
        tokens[token_id] = secret
    return tokens


async def _traffic(services: Any) -> None:
    """Requests through vk-ana's limits since they were set: most settled, two still in flight
    (their reservations show as held on the key's bars)."""
    key = await services.store.key_by_id("vk-ana")
    for _ in range(100):
        if any(r.measure == "requests" for r in services.limits.rules_for(key)):
            break
        await asyncio.sleep(0.05)
    rnd = random.Random(5)
    for n in range(14):
        tokens = rnd.randint(2000, 9000)
        admission = await services.limits.admit(f"seed-live-{n}", key, 5 * 10**10, tokens)
        if n < 12:
            row = services.limits.spend_row(
                admission, f"seed-live-{n}", key, rnd.randint(10**9, 4 * 10**10), tokens, datetime.now(UTC)
            )
            await services.limits.settle(admission, row)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, dict[str, str], Any]]:
    tmp = tmp_path_factory.mktemp("console")
    gw_port, idp_port = free_port(), free_port()
    callback = f"http://127.0.0.1:{gw_port}/auth/callback"
    clients = [{"client_id": "sluice", "client_secret": SECRET, "redirect_uris": [callback]}]
    with OidcProvider(idp_port, clients, ACCOUNTS, tmp) as idp:
        config: dict[str, Any] = {
            "audit": {"hmac_key": "console-audit-key-0123456789"},
            "providers": {"fake": {}},
            "pricing": {"overrides": {"echo": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 5}}},
            "access_profiles": [
                {
                    "id": "developers",
                    "groups": ["engineering"],
                    "provider_configs": [{"provider": "fake"}],
                    "budgets": [{"id": "monthly", "max_limit": 50, "reset_duration": "1M"}],
                    "mcp": {"tools": ["everything/echo"]},
                }
            ],
            "auth": {
                "oidc": {
                    "issuer": idp.issuer,
                    "client_id": "sluice",
                    "client_secret": SECRET,
                    "redirect_uri": callback,
                    "scopes": ["openid", "email", "profile", "groups"],
                    "role_mapping": {"engineering": ["developer"]},
                },
                "session": {"secret": "console-session-secret-0123456789", "secure_cookie": False},
                "guard": {"throttle": False},
            },
        }
        with GatewayThread(config, tmp, port=gw_port) as gw:
            tokens = gw.call(_seed(gw))
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM,
                    headless=True,
                    args=[
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--no-first-run",
                    ],
                )
                try:
                    yield gw, tokens, browser
                finally:
                    browser.close()


READERS = ["Overview", "Developers and keys", "Teams and customers"]


def _page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors  # CSP violations are reported as console errors
    return page


def sign_in(page: Any, gw: GatewayThread, token: str) -> None:
    page.goto(f"{gw.base_url}/console/")
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{gw.base_url}/console/")


def shot(page: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"console-{name}.png"), full_page=True)


def test_admin_signs_in_and_sees_every_page(console: tuple[GatewayThread, dict[str, str], Any]) -> None:
    gw, tokens, browser = console
    page = _page(browser)
    page.goto(f"{gw.base_url}/console/sign-in")
    shot(page, "sign-in")
    sign_in(page, gw, tokens["tok-admin"])
    assert page.get_by_role("heading", name="Overview").is_visible()
    assert page.locator("svg.chart").count() == 2
    assert page.get_by_text("vk-ana").first.is_visible()
    shot(page, "overview")
    nav = page.get_by_role("navigation", name="Console").get_by_role("link").all_inner_texts()
    assert nav == [*READERS, "Requests", "Sessions", "Stops", "Audit", "MCP", "Configuration", "My usage"]
    for name, path, heading in (
        ("keys", "/console/keys", "Developers and keys"),
        ("key", "/console/keys/vk-ana", "Key vk-ana"),
        ("teams", "/console/teams", "Teams and customers"),
        ("requests", "/console/requests", "Requests"),
        ("request", "/console/requests/req-0001", "Request req-0001"),
        ("audit", "/console/audit", "Audit log"),
        ("sessions", "/console/sessions", "Agent sessions"),
        ("config", "/console/config", "Configuration"),
        ("mcp", "/console/mcp", "MCP"),
    ):
        page.goto(gw.base_url + path)
        assert page.get_by_role("heading", level=1).inner_text() == heading, path
        shot(page, name)
    page.goto(f"{gw.base_url}/console/audit")
    page.get_by_role("button", name="Verify now").click()
    assert "The chain is intact" in page.locator("#verdict").inner_text()
    assert not [e for e in page.errors if "Content Security Policy" in e], page.errors


@pytest.mark.parametrize(
    ("token", "pages", "refused"),
    [
        ("tok-auditor", [*READERS, "Requests", "Sessions", "Stops", "Audit", "MCP", "Configuration", "My usage"], []),
        (
            "tok-viewer",
            [*READERS, "Stops", "MCP", "Configuration", "My usage"],
            ["/console/requests", "/console/audit", "/console/sessions"],
        ),
        # A lead sees their teams' sessions and stops (stops.read was missing for team leads).
        ("tok-lead", [*READERS, "Sessions", "Stops", "MCP", "Configuration", "My usage"], ["/console/requests"]),
    ],
)
def test_each_role_sees_its_pages(
    console: tuple[GatewayThread, dict[str, str], Any], token: str, pages: list[str], refused: list[str]
) -> None:
    gw, tokens, browser = console
    page = _page(browser)
    sign_in(page, gw, tokens[token])
    assert page.get_by_role("navigation", name="Console").get_by_role("link").all_inner_texts() == pages
    for title in pages:
        with page.expect_navigation():
            page.get_by_role("navigation", name="Console").get_by_role("link", name=title, exact=True).click()
        assert page.get_by_role("heading", level=1).is_visible()
        assert "Not allowed" not in page.content(), (token, title)
    for path in refused:
        response = page.goto(gw.base_url + path)
        assert response is not None and response.status == 403
        assert page.get_by_role("heading", name="Not allowed").is_visible()
    if token == "tok-viewer":
        page.goto(f"{gw.base_url}/console/")
        assert "may not read spend" in page.content()  # the API's spend.read is not the viewer's


def test_live_tail_shows_a_new_request(console: tuple[GatewayThread, dict[str, str], Any]) -> None:
    gw, tokens, browser = console
    page = _page(browser)
    sign_in(page, gw, tokens["tok-auditor"])
    page.goto(f"{gw.base_url}/console/requests")
    page.wait_for_function("document.getElementById('tail-state').textContent.startsWith('Live')")
    entry = RequestLogEntry(
        request_id="req-live-1",
        ts=datetime.now(UTC),
        path="/v1/chat/completions",
        surface="openai",
        status=200,
        decision="allow",
        virtual_key_id="vk-cy",
        team_id="team-data",
        model="gpt-5-mini",
        cost_pico=12 * 10**9,
    )
    gw.call(gw.services.store.insert_requests([entry]))
    row = page.locator("#log-rows tr.fresh").first
    row.wait_for(timeout=10_000)
    assert "vk-cy" in row.inner_text() and "gpt-5-mini" in row.inner_text()
    row.get_by_role("link").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Request req-live-1"


def test_issue_change_a_budget_and_revoke_a_key(console: tuple[GatewayThread, dict[str, str], Any]) -> None:
    gw, tokens, browser = console
    page = _page(browser)
    sign_in(page, gw, tokens["tok-admin"])
    page.goto(f"{gw.base_url}/console/keys")
    page.get_by_label("Id", exact=True).fill("vk-new")
    page.get_by_label("Team", exact=True).fill("team-web")
    page.get_by_label("Provider", exact=True).fill("fake")
    page.get_by_role("button", name="Issue").click()
    secret = page.locator("#secret").input_value()
    assert secret.startswith("sk-")
    shot(page, "secret")
    page.get_by_role("link", name="Go to the key").click()
    assert secret not in page.content()  # shown once
    page.get_by_label("New budget, dollars").fill("25")
    page.get_by_role("button", name="Add budget").click()
    assert "Recorded as a configuration event" in page.content()
    page.get_by_role("link", name="Back").click()
    page.get_by_label("Limit of vk-new-budget, dollars").fill("30")
    page.get_by_role("button", name="Change budget").click()
    changed = page.locator("tr.changed").first.inner_text()
    assert "max_limit" in changed and "30" in changed
    shot(page, "budget-changed")
    page.get_by_role("link", name="Back").click()
    page.get_by_role("button", name="Revoke key").click()
    assert page.get_by_role("status").inner_text().startswith("Revoked")
    key = gw.call(gw.services.store.key_by_id("vk-new"))
    assert key is not None and key.revoked_at is not None
    budget = next(o for o in gw.call(gw.services.store.list_objects()) if o.id == "vk-new-budget")
    assert Decimal(str(budget.body["max_limit"])) == 30


def test_team_lead_is_refused_on_another_team(console: tuple[GatewayThread, dict[str, str], Any]) -> None:
    gw, tokens, browser = console
    page = _page(browser)
    sign_in(page, gw, tokens["tok-lead"])
    page.goto(f"{gw.base_url}/console/keys")
    listed = page.locator("table.keys tbody").inner_text()
    assert "vk-ana" in listed and "vk-cy" not in listed
    response = page.goto(f"{gw.base_url}/console/keys/vk-cy")
    assert response is not None and response.status == 403
    assert "only for teams they lead" in page.content()
    page.goto(f"{gw.base_url}/console/keys/vk-bo")
    page.get_by_label("Limit of b-vk-bo, dollars").fill("500")  # over the team's $200 cap
    page.get_by_role("button", name="Change budget").click()
    assert page.get_by_role("heading", name="Not allowed").is_visible()
    assert "cap" in page.content()


def test_a_developer_signs_in_with_sso_and_sees_only_their_own(
    console: tuple[GatewayThread, dict[str, str], Any],
) -> None:
    gw, _, browser = console
    page = _page(browser)
    page.goto(f"{gw.base_url}/console/sign-in?next=/console/me")
    page.get_by_role("link", name="Sign in with single sign-on").click()
    page.locator("input[name=login]").fill("dave")
    page.locator("input[name=password]").fill("any")
    page.locator("button[type=submit]").click()
    page.locator("button[type=submit]").click()  # consent
    page.get_by_role("link", name="Continue").click()  # past the page showing the new key once
    page.wait_for_url(f"{gw.base_url}/console/me")
    key_id = gw.call(_dave_used_it(gw))
    page.reload()
    assert page.get_by_role("heading", name="My usage").is_visible()
    month = page.get_by_role(
        "table", name="This month per key: metered by the gateway, and reported by your signed-in agents"
    )
    [row] = [r for r in month.locator("tbody tr").all_inner_texts() if key_id in r]
    # Nothing metered by the gateway, $1.25 and 52,000 tokens reported by his agent: use that did
    # not go through the gateway is a row of its own.
    assert row.split("\t")[1:] == ["$0.00", "0", "0", "$1.25", "52000"], row
    mine = page.locator("section", has=page.get_by_role("heading", name="My keys")).inner_text()
    assert "vk-ana" not in mine and "No key is attached to you" not in mine
    assert "sluice connect claude-code" in page.content()
    assert page.locator("svg.budget").count() == 1  # the profile's budget, per developer
    shot(page, "me")
    page.goto(f"{gw.base_url}/console/keys")
    listed = page.locator("table.keys tbody").inner_text()
    assert not any(k in listed for k in ("vk-ana", "vk-bo", "vk-cy", "vk-dee"))
    response = page.goto(f"{gw.base_url}/console/requests")
    assert response is not None and response.status == 403
    page.goto(f"{gw.base_url}/console/")
    assert "your own keys" in page.content()


async def _dave_used_it(gw: GatewayThread) -> str:
    """What Dave's signed-in agent reported over OTLP this month, none of it through the gateway."""
    from sluice.storage.grants import AgentMetric

    services = gw.services
    [key] = [k for k in await services.store.list_keys() if k.profile_id == "developers" and k.user_id]
    now = datetime.now(UTC)
    points = [
        AgentMetric(now, key.user_id, key.id, "claude-code", "claude_code.cost.usage", {"model": "echo"}, 1.25, "USD"),
        AgentMetric(
            now, key.user_id, key.id, "claude-code", "claude_code.token.usage", {"type": "input"}, 50000, "tokens"
        ),
        AgentMetric(
            now, key.user_id, key.id, "claude-code", "claude_code.token.usage", {"type": "output"}, 2000, "tokens"
        ),
    ]
    await services.store.insert_agent_metrics(points)
    return key.id


def test_every_page_reads_without_javascript(console: tuple[GatewayThread, dict[str, str], Any]) -> None:
    gw, tokens, browser = console
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{gw.base_url}/console/sign-in")
    page.get_by_label("Admin token").fill(tokens["tok-auditor"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{gw.base_url}/console/")
    for path, text in (
        ("/console/", "Top spenders this month"),
        ("/console/keys", "vk-ana"),
        ("/console/requests", "Live tail needs JavaScript"),
        ("/console/requests/req-0002", "Attempts"),
        ("/console/audit", "Records, newest first"),
    ):
        page.goto(gw.base_url + path)
        assert text in page.content(), path
    page.goto(f"{gw.base_url}/console/requests?team=team-data")
    assert "team-web" not in page.locator("#log-rows").inner_text()
    context.close()


def _stopped_sessions(gw: GatewayThread) -> list[Any]:
    return [s for s in gw.call(gw.services.store.list_stops(active_only=True)) if s.scope == "session"]


def test_a_team_lead_stops_and_resumes_their_teams_session_only(
    console: tuple[GatewayThread, dict[str, str], Any],
) -> None:
    gw, tokens, browser = console
    page = _page(browser)
    sign_in(page, gw, tokens["tok-lead"])
    page.goto(f"{gw.base_url}/console/sessions")
    listed = page.locator("table tbody").inner_text()
    assert "vk-ana" in listed and "vk-cy" not in listed and "vk-dee" not in listed  # their team's only
    row = page.locator("tr", has=page.locator("code", has_text="vk-ana")).first
    session = row.locator("td").first.inner_text().strip()
    row.get_by_label(f"Why stop session {session}").fill("looping on a failing test")
    row.get_by_role("button", name="Stop").click()
    assert page.get_by_role("status").inner_text().startswith("Stopped")
    [stop] = [s for s in _stopped_sessions(gw) if s.target == session]
    assert stop.key_id == "vk-ana" and stop.actor.endswith("tok-lead") and stop.reason == "looping on a failing test"
    row = page.locator("tr", has=page.locator("code", has_text=session)).first
    assert "Stopped by " in row.inner_text() and "looping on a failing test" in row.inner_text()
    # The session's own page shows it stopped, with its Resume form.
    row.get_by_role("link", name=session).click()
    assert page.get_by_role("heading", level=1).inner_text() == f"Session {session}"
    assert "looping on a failing test" in page.content()
    shot(page, "session")
    page.goto(f"{gw.base_url}/console/stops")
    active = page.locator("table").first.inner_text()
    assert session in active and "looping on a failing test" in active and "tok-lead" in active
    page.get_by_label(f"Why resume stop {stop.id}").fill("fixed the test")
    page.get_by_role("button", name="Resume").click()
    assert page.get_by_role("status").inner_text() == "Resumed."
    assert not [s for s in _stopped_sessions(gw) if s.target == session]
    history = page.locator("table").last.inner_text()
    assert session in history and "fixed the test" in history
    kinds = [r.kind for r in gw.call(_audit(gw)) if r.kind in ("stop", "resume")]
    assert kinds[-2:] == ["stop", "resume"]


async def _audit(gw: GatewayThread) -> list[Any]:
    return [r async for r in gw.services.store.audit_records()]


def test_a_team_lead_cannot_stop_another_teams_session(console: tuple[GatewayThread, dict[str, str], Any]) -> None:
    # Hostile: the lead forges the Stop form (with a good CSRF token) for team-data's key and its
    # session, for a session without its key, and for the whole organisation; and a Resume of an
    # admin's stop on team-data.
    gw, tokens, browser = console
    admin = _page(browser)
    sign_in(admin, gw, tokens["tok-admin"])
    admin.goto(f"{gw.base_url}/console/stops")
    admin.get_by_label("Scope").select_option("key")
    admin.get_by_label("Session, key or team id").fill("vk-dee")
    admin.get_by_label("Why (shown to the callers refused)").fill("leaked in a CI log")
    admin.get_by_role("button", name="Stop").click()
    assert admin.get_by_role("status").inner_text().startswith("Stopped")
    page = _page(browser)
    sign_in(page, gw, tokens["tok-lead"])
    page.goto(f"{gw.base_url}/console/stops")
    assert "vk-dee" not in page.content()  # another team's stop is not shown to the lead
    csrf = page.locator("input[name=csrf]").first.input_value()
    before = gw.call(gw.services.store.list_stops(active_only=False))
    for action, form in (
        ("stops", {"scope": "session", "target": "sess-vk-cy-1", "key_id": "vk-cy"}),
        ("stops", {"scope": "key", "target": "vk-cy"}),
        ("stops", {"scope": "team", "target": "team-data"}),
        ("stops", {"scope": "session", "target": "sess-vk-cy-1"}),
        ("stops", {"scope": "org"}),
        ("stops/resume", {"scope": "key", "target": "vk-dee"}),
    ):
        reply = page.request.post(
            f"{gw.base_url}/console/{action}",
            form={"csrf": csrf, "reason": "hostile", **form},
            headers={"origin": gw.base_url},
            max_redirects=0,
        )
        # Refused by the API's rule (the CSRF token and origin are good), and nothing was changed.
        assert reply.status == 403 and "Not allowed" in reply.text(), (action, form, reply.status, reply.text())
        assert "CSRF" not in reply.text()
    assert gw.call(gw.services.store.list_stops(active_only=False)) == before
    # The admin sees it and the history, and resumes it; the page is the docs' screenshot.
    admin.goto(f"{gw.base_url}/console/stops")
    assert "leaked in a CI log" in admin.locator("table").first.inner_text()
    shot(admin, "stops")
    [stop] = [s for s in gw.call(gw.services.store.list_stops(active_only=True)) if s.target == "vk-dee"]
    admin.get_by_label(f"Why resume stop {stop.id}").fill("rotated the key")
    admin.get_by_role("button", name="Resume").click()
    assert admin.get_by_role("status").inner_text() == "Resumed."


def test_a_team_lead_stops_and_resumes_their_teams_key_from_its_page(
    console: tuple[GatewayThread, dict[str, str], Any],
) -> None:
    gw, tokens, browser = console
    page = _page(browser)
    sign_in(page, gw, tokens["tok-lead"])
    page.goto(f"{gw.base_url}/console/keys/vk-bo")
    page.get_by_label("Why stop key vk-bo").fill("laptop stolen")
    page.get_by_role("button", name="Stop key").click()
    assert page.get_by_role("status").inner_text().startswith("Stopped")
    assert "laptop stolen" in page.locator("#stop-h + *, section:has(#stop-h)").first.inner_text()
    [stop] = [s for s in gw.call(gw.services.store.list_stops(active_only=True)) if s.target == "vk-bo"]
    assert stop.scope == "virtual_key" and stop.actor.endswith("tok-lead")
    page.get_by_label("Why resume key vk-bo").fill("key rotated")
    page.get_by_role("button", name="Resume key").click()
    assert page.get_by_role("status").inner_text() == "Resumed."
    assert not [s for s in gw.call(gw.services.store.list_stops(active_only=True)) if s.target == "vk-bo"]
