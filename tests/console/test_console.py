"""The console over the real app: sign-in, CSRF, the actions (through the admin API's handlers,
with their configuration events and audit records), what each role sees, the live tail."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from importlib import resources

from sluice.app import Services
from sluice.http.server import SluiceASGI
from sluice.storage.records import RequestLogEntry
from tests.admin.conftest import BOOTSTRAP
from tests.console.conftest import Browser, role_token


async def signed_in(app: SluiceASGI, token: str) -> Browser:
    b = Browser(app)
    assert (await b.sign_in(token)).status == 303
    return b


async def test_pages_need_sign_in_and_a_bad_token_is_refused(gateway: tuple[Services, SluiceASGI]) -> None:
    _, app = gateway
    b = Browser(app)
    page = await b.get("/console/keys")
    assert page.status == 303 and page.header("location") == "/console/sign-in?next=/console/keys"
    assert (await b.sign_in("not-a-token")).status == 401
    assert "sluice_console" not in b.cookies
    assert (await b.get("/console/")).status == 303
    assert (await b.sign_in(BOOTSTRAP)).status == 303
    assert (await b.get("/console/")).status == 200


async def test_sign_in_refuses_a_cross_site_form_and_an_open_redirect(gateway: tuple[Services, SluiceASGI]) -> None:
    _, app = gateway
    b = Browser(app)
    page = await b.get("/console/sign-in")
    forged = await b.post("/console/sign-in", {"csrf": "x" * 64, "token": BOOTSTRAP})
    assert forged.status == 403 and "sluice_console" not in b.cookies
    page = await b.get("/console/sign-in")
    away = await b.post("/console/sign-in", {"csrf": page.csrf(), "token": BOOTSTRAP, "next": "https://evil.test/"})
    assert away.status == 303 and away.header("location") == "/console/"


async def test_every_page_has_a_strict_csp_and_no_inline_script_or_style(gateway: tuple[Services, SluiceASGI]) -> None:
    _, app = gateway
    b = await signed_in(app, BOOTSTRAP)
    for path in (
        "/console/",
        "/console/keys",
        "/console/teams",
        "/console/requests",
        "/console/sessions",
        "/console/audit",
        "/console/config",
        "/console/mcp",
        "/console/me",
    ):
        page = await b.get(path)
        assert page.status == 200, path
        csp = page.header("content-security-policy") or ""
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
        assert page.header("x-frame-options") == "DENY"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), path  # every script is a file
        assert "style=" not in page.text and "<style" not in page.text, path
        assert re.search(r"\son\w+=", page.text) is None, path  # no inline event handlers
    templates = resources.files("sluice.http.console").joinpath("templates")
    for t in templates.iterdir():
        assert "style=" not in t.read_text(), t.name


async def test_a_cross_site_post_is_refused(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    admin = await signed_in(app, BOOTSTRAP)
    good = (await admin.get("/console/keys")).csrf()
    form = {"id": "vk-csrf", "team_id": "team-a"}
    # No token, another session's token, and a real token sent from another site: all refused.
    assert (await admin.post("/console/keys", form)).status == 403
    other = await signed_in(app, role_token("admin"))
    assert (await admin.post("/console/keys", {**form, "csrf": (await other.get("/console/")).csrf()})).status == 403
    evil = {"origin": "https://evil.test"}
    assert (await admin.post("/console/keys", {**form, "csrf": good}, headers=evil)).status == 403
    cross = {"sec-fetch-site": "cross-site"}
    assert (await admin.post("/console/keys", {**form, "csrf": good}, headers=cross)).status == 403
    assert await services.store.key_by_id("vk-csrf") is None
    same = {"origin": "http://testserver", "sec-fetch-site": "same-origin"}
    assert (await admin.post("/console/keys", {**form, "csrf": good}, headers=same)).status == 200
    assert await services.store.key_by_id("vk-csrf") is not None


async def _audit_kinds(services: Services) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    await services.audit.drain()
    return [(r.kind, r.data) async for r in services.store.audit_records()]


async def test_issue_rotate_revoke_and_change_a_budget(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    b = await signed_in(app, BOOTSTRAP)
    issued = await b.submit(
        "/console/keys", "/console/keys", {"id": "vk-alice", "team_id": "team-a", "provider": "fake", "models": "echo"}
    )
    assert issued.status == 200
    secret = re.search(r'id="secret" class="secret" readonly value="([^"]+)"', issued.text)
    assert secret and secret.group(1).startswith("sk-")
    assert issued.header("cache-control") == "no-store"
    key = await services.store.key_by_id("vk-alice")
    assert key is not None and key.grants[0].allowed_models == ("echo",)
    detail = await b.get("/console/keys/vk-alice")
    assert secret.group(1) not in detail.text  # shown once
    rotated = await b.submit("/console/keys/vk-alice", "/console/keys/vk-alice/rotate", {"overlap_seconds": "0"})
    new_secret = re.search(r'readonly value="([^"]+)"', rotated.text)
    assert new_secret and new_secret.group(1) != secret.group(1)
    added = await b.submit(
        "/console/keys/vk-alice", "/console/keys/vk-alice/budgets", {"max_limit": "5", "reset_duration": "1d"}
    )
    assert added.status == 200 and "Recorded as a configuration event" in added.text
    changed = await b.submit("/console/keys/vk-alice", "/console/budgets/vk-alice-budget", {"max_limit": "7.5"})
    assert changed.status == 200 and 'class="changed"' in changed.text and "7.5" in changed.text
    revoked = await b.submit("/console/keys/vk-alice", "/console/keys/vk-alice/revoke", {})
    assert revoked.status == 303
    key = await services.store.key_by_id("vk-alice")
    assert key is not None and key.revoked_at is not None
    events = [(e.kind, e.object_id, e.action) for e in await services.store.config_events(20)]
    for want in (
        ("virtual_key", "vk-alice", "create"),
        ("virtual_key", "vk-alice", "rotate"),
        ("virtual_key", "vk-alice", "revoke"),
        ("budget", "vk-alice-budget", "create"),
        ("budget", "vk-alice-budget", "update"),
    ):
        assert want in events, want
    audited = [d for k, d in await _audit_kinds(services) if k == "config_change"]
    assert {(d["object"], d["action"]) for d in audited} >= {("virtual_key", "revoke"), ("budget", "update")}
    assert all(services.config.auth.session.cookie_name not in str(d) for d in audited)


async def test_a_team_lead_is_refused_on_another_team_and_over_the_cap(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    admin = await signed_in(app, BOOTSTRAP)
    for key_id, team in (("vk-a", "team-a"), ("vk-b", "team-b")):
        assert (await admin.submit("/console/keys", "/console/keys", {"id": key_id, "team_id": team})).status == 200
        await admin.submit(f"/console/keys/{key_id}", f"/console/keys/{key_id}/budgets", {"max_limit": "1"})
    cap = {"id": "cap-a", "team_id": "team-a", "max_limit": 10, "reset_duration": "1M"}
    from tests.admin.conftest import Client

    assert (await Client(app).post("/api/budgets", json=cap)).status == 201
    lead = await signed_in(app, role_token("team-lead", "team-a", "u-lead"))
    keys = await lead.get("/console/keys")
    assert "vk-a" in keys.text and "vk-b" not in keys.text
    assert (await lead.get("/console/keys/vk-b")).status == 403
    csrf = keys.csrf()
    assert (await lead.post("/console/keys/vk-b/revoke", {"csrf": csrf})).status == 403
    assert (await lead.post("/console/budgets/vk-b-budget", {"csrf": csrf, "max_limit": "2"})).status == 403
    assert (await lead.post("/console/keys", {"csrf": csrf, "id": "vk-x", "team_id": "team-b"})).status == 403
    over = await lead.post("/console/budgets/vk-a-budget", {"csrf": csrf, "max_limit": "50"})
    assert over.status == 403 and "cap" in over.text
    assert (await lead.post("/console/budgets/vk-a-budget", {"csrf": csrf, "max_limit": "3"})).status == 200
    b_key = await services.store.key_by_id("vk-b")
    assert b_key is not None and b_key.revoked_at is None


def entry(request_id: str, key: str, team: str | None, cost: int, **kw: object) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=request_id,
        ts=kw.pop("ts", datetime.now(UTC)),  # type: ignore[arg-type]
        path="/v1/messages",
        surface="anthropic",
        status=kw.pop("status", 200),  # type: ignore[arg-type]
        decision=kw.pop("decision", "allow"),  # type: ignore[arg-type]
        virtual_key_id=key,
        team_id=team,
        model="echo",
        provider="fake",
        cost_pico=cost,
        client="claude-cli/2.0",
        **kw,  # type: ignore[arg-type]
    )


async def test_a_developer_sees_only_their_own_keys_and_spend(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    admin = await signed_in(app, BOOTSTRAP)
    for key_id, user in (("vk-mine", "u-dev"), ("vk-theirs", "u-other")):
        await admin.submit("/console/keys", "/console/keys", {"id": key_id, "user_id": user})
    await services.store.insert_requests(
        [entry("r1", "vk-mine", None, 3 * 10**12, session_id="sess-1"), entry("r2", "vk-theirs", None, 9 * 10**12)]
    )
    dev = await signed_in(app, role_token("developer", "", "u-dev"))
    me = await dev.get("/console/me")
    assert me.status == 200 and "vk-mine" in me.text and "vk-theirs" not in me.text and "sess-1" in me.text
    keys = await dev.get("/console/keys")
    assert "vk-mine" in keys.text and "vk-theirs" not in keys.text
    overview = await dev.get("/console/")
    assert "$3.00" in overview.text and "$9.00" not in overview.text and "$12.00" not in overview.text
    assert (await dev.get("/console/requests")).status == 403
    assert (await dev.get("/console/keys/vk-theirs")).status == 403
    whole = await admin.get("/console/")
    assert "$12.00" in whole.text  # the roll-up, for a caller who may see everything
    developers = whole.text.split("<caption>Developer</caption>")[1].split("</table>")[0]
    assert re.search(r"<td>u-other</td><td class=\"num\">\$9.00</td>", developers), developers
    assert developers.index("u-other") < developers.index("u-dev")  # largest first


async def test_overview_counts_denials_rate_limits_and_provider_errors(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    await services.store.insert_requests(
        [
            entry("d1", "vk-1", "team-a", 0, status=403, decision="deny", error_kind="policy_model_denied"),
            entry("d2", "vk-1", "team-a", 0, status=429, decision="deny", error_kind="policy_rate_limited"),
            entry("e1", "vk-1", "team-a", 0, status=502, decision="error", error_kind="provider_error"),
            entry("ok", "vk-1", "team-a", 10**12),
        ]
    )
    page = await (await signed_in(app, BOOTSTRAP)).get("/console/")
    tiles = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)</dd>", page.text))
    assert tiles["Denied this month"] == "2"
    assert tiles["Rate-limit hits this month"] == "1"
    assert tiles["Provider errors this month"] == "1"
    assert tiles["This month"] == "$1.00"


async def test_request_log_shows_guardrail_decisions(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    await services.store.insert_requests([entry("g1", "vk-1", "team-a", 0, guardrails=3)])
    admin = await signed_in(app, BOOTSTRAP)
    listing = (await admin.get("/console/requests")).text
    row = next(line for line in listing.split("<tr>") if "/requests/g1" in line)
    assert '<td class="num">3</td>' in row and ">Guardrails</th>" in listing
    detail = dict(re.findall(r"<dt>([^<]+)</dt><dd>([^<]+)", (await admin.get("/console/requests/g1")).text))
    assert detail["Guardrail decisions"].startswith("3")


async def test_overview_shows_an_open_circuit_breaker_as_open(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    breakers = services.engine.breakers
    now = time.monotonic()
    for _ in range(breakers.config.failure_threshold):
        breakers.failed("anthropic/primary", now)
    page = await (await signed_in(app, BOOTSTRAP)).get("/console/")
    threshold = breakers.config.failure_threshold
    row = f'<td>anthropic/primary</td><td class="num">{threshold}</td><td class="state-open">open</td>'
    assert row in page.text
    breakers.succeeded("anthropic/primary")


async def test_request_log_filters_detail_and_live_tail(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    await services.store.insert_requests(
        [
            entry("q1", "vk-1", "team-a", 10**9, session_id="s-9", ts=datetime.now(UTC) - timedelta(minutes=5)),
            entry("q2", "vk-2", "team-b", 0, status=429, ts=datetime.now(UTC) - timedelta(minutes=5)),
        ]
    )
    auditor = await signed_in(app, role_token("security-auditor"))
    page = await auditor.get("/console/requests?team=team-a")
    assert "/console/requests/q1" in page.text and "/console/requests/q2" not in page.text
    page = await auditor.get("/console/requests?status=429")
    assert "/console/requests/q2" in page.text and "/console/requests/q1" not in page.text
    assert (await auditor.get("/console/requests?status=abc")).status == 422
    detail = await auditor.get("/console/requests/q1")
    assert detail.status == 200 and "s-9" in detail.text and "claude-cli/2.0" in detail.text
    # The tail: a request logged while the stream is open arrives as an event.
    auditor.linger_s = 2.5

    async def later() -> None:
        await asyncio.sleep(0.5)
        await services.store.insert_requests([entry("live-1", "vk-1", "team-a", 0)])

    task = asyncio.create_task(later())
    stream = await auditor.get("/console/requests/tail", headers={"accept": "text/event-stream"})
    await task
    assert stream.status == 200 and (stream.header("content-type") or "").startswith("text/event-stream")
    assert b"event: request" in stream.body and b'"id":"live-1"' in stream.body
    assert b'"id":"q1"' not in stream.body  # only what is new since the tail opened
    reads = [d for k, d in await _audit_kinds(services) if k == "data_access"]
    assert {d["action"] for d in reads} >= {"request_log_query", "request_log_read", "request_log_tail"}


async def test_audit_verify_now_reports_the_chain(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    b = await signed_in(app, BOOTSTRAP)
    await b.submit("/console/keys", "/console/keys", {"id": "vk-v"})
    await services.audit.drain()
    verdict = await b.submit("/console/audit", "/console/audit/verify", {})
    assert verdict.status == 200 and "The chain is intact" in verdict.text
    from sqlalchemy import update

    from sluice.storage.backends.sql_tables import audit_log

    async with services.store.engine.begin() as conn:  # type: ignore[attr-defined]
        await conn.execute(update(audit_log).where(audit_log.c.seq == 1).values(actor="someone-else"))
    verdict = await b.submit("/console/audit", "/console/audit/verify", {})
    assert "The chain is broken: record 1 was modified" in verdict.text


async def test_a_budget_bar_shows_what_requests_in_flight_hold(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    b = await signed_in(app, BOOTSTRAP)
    await b.submit("/console/keys", "/console/keys", {"id": "vk-h", "provider": "fake"})
    await b.submit("/console/keys/vk-h", "/console/keys/vk-h/budgets", {"max_limit": "10", "reset_duration": "1d"})
    key = await services.store.key_by_id("vk-h")
    assert key is not None
    admission = await services.limits.admit("req-held", key, 2 * 10**12, 100)  # $2 reserved, not settled
    try:
        page = await b.get("/console/keys/vk-h")
        row = page.text.split("<td>vk-h-budget</td>")[1].split("</tr>")[0]
        cells = re.findall(r'<td class="num">([^<]+)</td>', row)
        assert cells[1:4] == ["$0.00", "$2.00", "$8.00"], cells  # spent, held, left
        assert "$2.00 held" in row  # the bar's accessible label
    finally:
        await services.limits.release(admission)


async def test_a_tail_that_falls_behind_jumps_to_the_newest(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    auditor = await signed_in(app, role_token("security-auditor"))
    auditor.linger_s = 2.5
    now = datetime.now(UTC)

    async def burst() -> None:
        await asyncio.sleep(0.3)
        await services.store.insert_requests(
            [entry(f"b{i:03d}", "vk-1", "team-a", 0, ts=now + timedelta(milliseconds=i)) for i in range(150)]
        )

    task = asyncio.create_task(burst())
    stream = await auditor.get("/console/requests/tail", headers={"accept": "text/event-stream"})
    await task
    assert b"event: skipped" in stream.body
    assert b'"id":"b149"' in stream.body and b'"id":"b000"' not in stream.body
    assert stream.body.count(b"event: request") == 100


async def test_configuration_shows_names_never_secrets_and_events_to_who_may_read_them(
    gateway: tuple[Services, SluiceASGI],
) -> None:
    _, app = gateway
    from tests.admin.conftest import Client

    api = Client(app)
    assert (await api.post("/api/providers", json={"name": "fake2", "type": "fake"})).status == 201
    made = await api.post("/api/provider-keys", json={"provider": "fake2", "name": "k1", "value": "env.HOME"})
    assert made.status == 201, made.body
    admin = await signed_in(app, BOOTSTRAP)
    page = await admin.get("/console/config")
    assert page.status == 200 and "fake2" in page.text and "k1" in page.text
    keys_table = page.text.split("<caption>Provider keys</caption>")[1].split("</table>")[0]
    assert "k1" in keys_table and "env.HOME" not in keys_table  # names only
    assert "Configuration events" in page.text and "provider_key fake2:k1" in page.text
    providers = page.text.split("<caption>Providers</caption>")[1].split("</table>")[0]
    assert re.search(r"<td>fake</td><td>type fake\s*</td><td>config file</td>", providers), providers
    viewer = await signed_in(app, role_token("viewer"))
    seen = await viewer.get("/console/config")
    assert seen.status == 200 and "fake2" in seen.text and "provider_key fake2:k1" not in seen.text
    assert "events.read" in seen.text
    assert (await (await signed_in(app, role_token("developer", "", "u-x"))).get("/console/config")).status == 403


async def test_audit_export_is_the_chain_as_json_lines(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    b = await signed_in(app, BOOTSTRAP)
    await b.submit("/console/keys", "/console/keys", {"id": "vk-e"})
    await services.audit.drain()
    b.linger_s = 0.5  # a streamed download: stay connected while it is sent
    got = await b.get("/console/audit/export")
    assert got.status == 200 and "attachment" in (got.header("content-disposition") or "")
    import orjson

    from sluice.audit.chain import verify
    from sluice.storage.records import AuditRecord

    records = [orjson.loads(line) for line in got.body.splitlines()]
    assert records and records[0]["seq"] == 1
    parsed = [
        AuditRecord(
            r["seq"],
            datetime.fromisoformat(r["ts"]),
            r["kind"],
            r["actor"],
            r["data"],
            r["key_id"],
            r["prev_mac"],
            r["mac"],
        )
        for r in records
    ]
    assert verify(parsed, services.config.audit.keys()).ok
    assert (await (await signed_in(app, role_token("viewer"))).get("/console/audit/export")).status == 403


async def test_deleting_the_admin_token_ends_its_console_session(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    from sluice.auth.admin_tokens import create_token

    _, secret, _ = await create_token(services.store, "tok-c", "c", ["admin"], [], None, "test", None)
    b = await signed_in(app, secret)
    assert (await b.get("/console/keys")).status == 200
    await services.admin.delete("admin_token", "tok-c", "test")
    page = await b.get("/console/keys")
    assert page.status == 303 and "/console/sign-in" in (page.header("location") or "")
    assert "sluice_console" not in b.cookies  # dropped, not presented again


async def test_mcp_shows_grants_to_key_readers_and_calls_to_auditors(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    from tests.admin.conftest import Client

    made = await Client(app).post("/api/keys", json={"id": "vk-m", "team_id": "team-a", "mcp_tools": ["srv/read_*"]})
    assert made.status == 201, made.body
    await services.audit.append("mcp_call", "vk-m", {"tool": "srv__read_file", "outcome": "ok"})
    await services.audit.append("mcp_denied", "vk-m", {"tool": "srv__delete", "outcome": "denied"})
    await services.audit.drain()
    page = await (await signed_in(app, BOOTSTRAP)).get("/console/mcp")
    assert page.status == 200 and "srv/read_*" in page.text
    per_tool = page.text.split("Calls and denials per tool")[1].split("</table>")[0]
    assert re.search(r"<td>srv__read_file</td><td class=\"num\">1</td><td class=\"num\">0</td>", per_tool)
    assert re.search(r"<td>srv__delete</td><td class=\"num\">0</td><td class=\"num\">1</td>", per_tool)
    lead_b = await (await signed_in(app, role_token("team-lead", "team-b"))).get("/console/mcp")
    assert lead_b.status == 200 and "vk-m" not in lead_b.text and "srv__read_file" not in lead_b.text
    assert (await (await signed_in(app, role_token("developer", "", "u-z"))).get("/console/mcp")).status == 403


async def test_a_keys_access_profile_budgets_are_drawn_with_its_own_spend(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    from sluice.storage.records import SpendRow
    from tests.admin.conftest import Client

    api = Client(app)
    profile = {
        "id": "devs",
        "groups": ["eng"],
        "provider_configs": [{"provider": "fake"}],
        "budgets": [{"id": "monthly", "max_limit": 50, "reset_duration": "1M"}],
    }
    assert (await api.post("/api/access-profiles", json=profile)).status == 201
    made = await api.post("/api/keys", json={"id": "vk-p", "user_id": "u-p", "profile_id": "devs"})
    assert made.status == 201, made.body
    await services.store.record_spend([SpendRow("sp-1", datetime.now(UTC), "vk-p", None, None, 4 * 10**12, 10)])
    dev = await signed_in(app, role_token("developer", "", "u-p"))
    me = await dev.get("/console/me")
    row = me.text.split("<td>devs/monthly@vk-p (vk-p)</td>")[1].split("</tr>")[0]
    assert re.findall(r'<td class="num">([^<]+)</td>', row)[:3] == ["$4.00", "$0.00", "$46.00"], row
    detail = await (await signed_in(app, BOOTSTRAP)).get("/console/keys/vk-p")
    assert "from access profile devs" in detail.text  # changed in the profile, not here


async def test_rate_limit_use_is_shown_beside_the_budgets(gateway: tuple[Services, SluiceASGI]) -> None:
    """A key's token, request and concurrency limits (its own and its team's) with what is used,
    what requests in flight hold and the reset; a viewer sees the limits, not the use."""
    from tests.admin.conftest import Client

    services, app = gateway
    api = Client(app)
    made = await api.post("/api/keys", json={"id": "vk-r", "team_id": "team-r", "grants": [{"provider": "fake"}]})
    assert made.status == 201, made.body
    own = {
        "id": "vk-r-rate",
        "virtual_key_id": "vk-r",
        "request_max_limit": 60,
        "request_reset_duration": "1m",
        "max_concurrent_requests": 4,
    }
    team = {"id": "team-r-tokens", "team_id": "team-r", "token_max_limit": 100000, "token_reset_duration": "1h"}
    for body in (own, team):
        assert (await api.post("/api/rate-limits", json=body)).status == 201
    key = await services.store.key_by_id("vk-r")
    assert key is not None
    admission = await services.limits.admit("req-rate", key, 0, 1500)  # in flight: 1 request, 1,500 tokens
    try:
        b = await signed_in(app, BOOTSTRAP)
        page = await b.get("/console/keys/vk-r")
        rates = page.text.split('id="rates-h"')[1].split("</table>")[0]
        row = rates.split("<td>vk-r-rate:requests</td>")[1].split("</tr>")[0]
        assert re.findall(r'<td class="num">([^<]+)</td>', row) == ["60 requests per 1m", "0", "1", "59"], row
        row = rates.split("<td>vk-r-rate:concurrent</td>")[1].split("</tr>")[0]
        assert re.findall(r'<td class="num">([^<]+)</td>', row) == ["4 in flight at once", "0", "1", "3"], row
        row = rates.split("<td>team-r-tokens:tokens</td>")[1].split("</tr>")[0]
        assert "team team-r" in row and "98,500" in row and "1,500 held by requests in flight" in row
        listed = await b.get("/console/keys?q=vk-r")
        assert "1 of 60 requests per 1m" in listed.text and "(team team-r)" in listed.text
        viewer = await (await signed_in(app, role_token("viewer"))).get("/console/keys/vk-r")
        rates = viewer.text.split('id="rates-h"')[1].split("</table>")[0]
        assert "60 requests per 1m" in rates and "held by requests in flight" not in rates
    finally:
        await services.limits.release(admission)


async def test_a_requests_seal_is_found_for_a_denial_and_behind_many_newer_records(
    gateway: tuple[Services, SluiceASGI],
) -> None:
    """A denied request's audit record is of kind `denied`, and an older request's lies behind
    thousands of newer ones: both are found (the page looked at the newest 5,000 `request`
    records only, so both said "not found")."""
    services, app = gateway
    await services.store.insert_requests(
        [
            entry("q-den", "vk-1", None, 0, status=403, decision="deny", reason="model not allowed"),
            entry("q-old", "vk-1", None, 10**9),
        ]
    )
    await services.audit.append("denied", "vk-1", {"request_id": "q-den", "path": "/v1/messages"})
    await services.audit.append("request", "vk-1", {"request_id": "q-old", "path": "/v1/messages"})
    for i in range(5100):
        await services.audit.append("request", "vk-2", {"request_id": f"newer-{i}"})
    await services.audit.drain()
    records = {r.data.get("request_id"): r async for r in services.store.audit_records() if r.kind != "data_access"}
    auditor = await signed_in(app, role_token("security-auditor"))
    for request_id in ("q-den", "q-old"):
        detail = await auditor.get(f"/console/requests/{request_id}")
        assert f"#{records[request_id].seq}, sealed <code>{records[request_id].mac}</code>" in detail.text, request_id
    denied = await auditor.get("/console/requests/q-den")
    assert "deny: model not allowed" in denied.text


def test_the_config_files_objects_are_listed_without_their_secrets() -> None:
    """What the file declares is on the Configuration page too (it showed only stored objects, so
    a gateway configured by its file showed no provider at all); never a key's value."""
    from sluice.http.console.config_page import from_file
    from sluice.settings import parse_config

    cfg = parse_config(
        {
            "providers": {"anthropic": {"keys": [{"name": "main", "value": "sk-ant-secret-value-123"}]}},
            "routing": {
                "rules": [{"id": "cheap", "when": "true", "target": "anthropic/claude-haiku"}],
                "aliases": [{"alias": "fast", "target": "anthropic/claude-haiku"}],
            },
            "mcp": {"servers": [{"name": "r", "transport": "http", "url": "https://u:pw-secret-9@mcp.example/mcp"}]},
        }
    )
    found = from_file(cfg)
    assert [o.id for o in found["provider"]] == ["anthropic"]
    assert [(o.id, o.source) for o in found["provider_key"]] == [("anthropic:main", "config file")]
    assert found["routing_rule"][0].body == {"when": "true", "target": "anthropic/claude-haiku"}
    assert found["alias"][0].id == "fast" and found["mcp_server"][0].body["url"] == "https://mcp.example/mcp"
    assert "secret" not in repr(found)


async def test_sessions_come_from_the_ledger_with_their_mcp_tools(gateway: tuple[Services, SluiceASGI]) -> None:
    services, app = gateway
    now = datetime.now(UTC)
    hostile = "<script>alert(1)</script>"
    await services.store.insert_requests(
        [
            entry(
                "s1",
                "vk-1",
                "team-a",
                10**12,
                session_id="sess-a",
                repo="acme/api",
                branch="fix-7",
                ts=now,
                mcp_tools=("fs__read_file", "fs__read_file"),
            ),
            entry("s2", "vk-1", "team-a", 10**12, session_id="sess-a", ts=now, mcp_tools=("git__log",)),
            entry("s3", "vk-2", "team-b", 5, session_id=hostile, ts=now),
            entry("old", "vk-1", "team-a", 5, session_id="sess-old", ts=now - timedelta(days=3)),
        ]
    )
    admin = await signed_in(app, BOOTSTRAP)
    page = await admin.get("/console/sessions")
    assert page.status == 200
    assert "sess-a" in page.text and "acme/api" in page.text and "fix-7" in page.text and "$2.00" in page.text
    assert "fs__read_file</code> ×2" in page.text and "git__log</code> ×1" in page.text
    assert hostile not in page.text and "&lt;script&gt;" in page.text
    assert "sess-old" not in page.text
    assert "sess-old" in (await admin.get("/console/sessions?since=7d")).text
    assert "sess-a" not in (await admin.get("/console/sessions?team=team-b")).text
    assert (await admin.get("/console/sessions?since=99y")).status == 422
