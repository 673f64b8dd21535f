"""The whole role x endpoint x scope matrix, walked from the admin API's route table.

EXPECTED is written out here, independently of sluice/auth/rbac.py: an endpoint whose action has
no row fails the test, and so does any difference between the two tables, in the pure function
and over HTTP against a real store.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sluice.auth.directory import USER
from sluice.auth.principal import ROLES, Principal
from sluice.auth.rbac import ACTIONS, Scope, decide
from sluice.http.admin import admin_endpoints
from sluice.http.admin.framework import Endpoint
from sluice.sessions.ledger import ledger_id
from sluice.storage.records import RequestLogEntry
from tests.admin.conftest import Client, admin_config, as_role, start

A, T, S, N = "all", "team", "self", "none"
#                  admin  auditor  lead  developer  viewer
EXPECTED: dict[str, tuple[str, str, str, str, str]] = {
    "me.read": (A, A, A, A, A),
    "keys.read": (A, A, T, S, A),
    "keys.create": (A, N, T, N, N),
    "keys.update": (A, N, T, N, N),
    "keys.rotate": (A, N, T, S, N),
    "keys.revoke": (A, N, T, N, N),
    "budgets.read": (A, A, T, S, A),
    "budgets.write": (A, N, T, N, N),
    "caps.write": (A, N, N, N, N),
    "config.read": (A, A, A, N, A),
    "config.write": (A, N, N, N, N),
    "profiles.read": (A, A, A, N, A),
    "profiles.write": (A, N, N, N, N),
    "users.read": (A, A, S, S, A),
    "users.write": (A, N, N, N, N),
    "spend.read": (A, A, T, S, N),
    "requests.read": (A, A, N, N, N),
    "audit.read": (A, A, N, N, N),
    "events.read": (A, A, N, N, N),
    "tokens.manage": (A, N, N, N, N),
    "stops.read": (A, A, T, N, A),
    "stops.write": (A, N, T, N, N),
}
SCOPES = {
    "global": Scope(),
    "own-team": Scope(team_id="team-a"),
    "other-team": Scope(team_id="team-b"),
    "own-user": Scope(user_id="u-me"),
    "other-user": Scope(user_id="u-other", team_id="team-b"),
    "own-team-over-cap": Scope(team_id="team-a", within_cap=False),
}


def expected(role: str, action: str, scope_name: str) -> bool:
    grant = EXPECTED[action][ROLES.index(role)]  # type: ignore[arg-type]
    scope = SCOPES[scope_name]
    if grant == A:
        return True
    if grant == T:
        return scope.team_id == "team-a" and scope.within_cap
    if grant == S:
        return scope.user_id == "u-me"
    return False


def principal(role: str) -> Principal:
    return Principal(f"p-{role}", frozenset({role}), "oidc", user_id="u-me", teams=frozenset({"team-a"}))  # type: ignore[arg-type]


def test_every_endpoint_has_a_rule() -> None:
    actions = {ep.action for ep in admin_endpoints()}
    assert actions <= set(EXPECTED), f"endpoints without an expected rule: {actions - set(EXPECTED)}"
    assert set(EXPECTED) == set(ACTIONS), "the test's table and rbac.ACTIONS name different actions"
    routes = [(ep.method, ep.path) for ep in admin_endpoints()]
    assert len(routes) == len(set(routes)), "two endpoints share a method and path"


@pytest.mark.parametrize("role", ROLES)
def test_pure_matrix(role: str) -> None:
    for action, scope_name in itertools.product(EXPECTED, SCOPES):
        got = decide(principal(role), action, SCOPES[scope_name])
        assert got.allowed is expected(role, action, scope_name), (role, action, scope_name, got.reason)


def test_no_role_and_unknown_action_deny() -> None:
    nobody = Principal("p", frozenset(), "oidc")
    assert not any(decide(nobody, action).allowed for action in ACTIONS)
    assert not decide(principal("admin"), "keys.destroy-everything").allowed


# -- over HTTP ------------------------------------------------------------------------------------
# For each endpoint: how to reach a resource in a given scope (path ids, body), after seeding.
KEYS = {"own-team": "vk-team-a", "other-team": "vk-team-b", "own-user": "vk-mine", "global": "vk-none"}
BUDGET_KEYS = {"own-team": "vk-team-a", "other-team": "vk-team-b", "own-user": "vk-mine", "global": "vk-none"}


async def seed(c: Client) -> None:
    for key_id, team, user in (
        ("vk-team-a", "team-a", None),
        ("vk-team-b", "team-b", None),
        ("vk-mine", None, "u-me"),
        ("vk-none", None, None),
    ):
        r = await c.post("/api/keys", json={"id": key_id, "team_id": team, "user_id": user})
        assert r.status == 201, r.body
    for kind, body in (
        ("teams", {"id": "team-a"}),
        ("customers", {"id": "cust-1"}),
        ("rate-limits", {"id": "rl-1", "team_id": "team-a", "max_concurrent_requests": 4}),
        ("providers", {"name": "fake2", "type": "fake"}),
        ("provider-keys", {"provider": "fake2", "name": "k1", "value": "env.HOME"}),
        ("mcp-servers", {"name": "srv", "transport": "http", "url": "http://127.0.0.1:9/mcp"}),
        ("tool-groups", {"name": "grp", "tools": ["srv/*"]}),
        ("routing-rules", {"id": "rule-1", "target": "fake/echo"}),
        ("aliases", {"alias": "fast", "target": "fake/echo"}),
        ("access-profiles", {"id": "prof-1", "groups": ["engineering"]}),
    ):
        assert (await c.post(f"/api/{kind}", json=body)).status == 201
    for scope_name, key_id in BUDGET_KEYS.items():
        body = {"id": f"b-{scope_name}", "virtual_key_id": key_id, "max_limit": 1, "reset_duration": "1d"}
        assert (await c.post("/api/budgets", json=body)).status == 201
    await c.post("/api/budgets", json={"id": "cap-a", "team_id": "team-a", "max_limit": 10, "reset_duration": "1M"})
    assert (await c.post("/api/tokens", json={"id": "tok-1", "roles": ["viewer"]})).status == 201


Request = tuple[str, dict[str, Any] | None, dict[str, Any] | None]  # path, body, query
_OBJECT_BODIES: dict[str, Callable[[str], dict[str, Any]]] = {
    "teams": lambda i: {"id": i},
    "customers": lambda i: {"id": i},
    "rate-limits": lambda i: {"id": i, "team_id": "team-a", "max_concurrent_requests": 2},
    "providers": lambda i: {"name": i, "type": "fake"},
    "provider-keys": lambda i: {"provider": "fake2", "name": i.split(":")[-1], "value": "env.HOME"},
    "mcp-servers": lambda i: {"name": i, "transport": "http", "url": "http://127.0.0.1:9/mcp"},
    "tool-groups": lambda i: {"name": i, "tools": []},
    "routing-rules": lambda i: {"id": i, "target": "fake/echo"},
    "aliases": lambda i: {"alias": i, "target": "fake/echo"},
    "access-profiles": lambda i: {"id": i, "groups": ["g"], "provider_configs": [{"provider": "fake"}]},
}
_EXISTING = {
    "teams": "team-a",
    "customers": "cust-1",
    "rate-limits": "rl-1",
    "providers": "fake2",
    "provider-keys": "fake2:k1",
    "mcp-servers": "srv",
    "tool-groups": "grp",
    "routing-rules": "rule-1",
    "aliases": "fast",
    "access-profiles": "prof-1",
}
USERS = {"own-user": "u-me", "other-user": "u-other"}
# One agent session of each of these keys is in the ledger (seed_sessions).
SESSION_KEYS = {"own-team": "vk-team-a", "other-team": "vk-team-b", "own-user": "vk-mine", "global": "vk-none"}


async def seed_sessions(services: Any) -> None:
    teams = {"vk-team-a": "team-a", "vk-team-b": "team-b"}
    entries = [
        RequestLogEntry(
            request_id=f"req-{key_id}",
            ts=datetime.now(UTC),
            path="/v1/messages",
            surface="anthropic_messages",
            status=200,
            decision="allow",
            virtual_key_id=key_id,
            team_id=teams.get(key_id),
            session_id=f"s-{key_id}",
        )
        for key_id in SESSION_KEYS.values()
    ]
    await services.store.insert_requests(entries)


def request_for(ep: Endpoint, scope_name: str, n: int) -> Request | None:
    """A request touching a resource of this scope, or None when the endpoint has no such scope."""
    parts = ep.path.split("/")
    collection = parts[2]
    if collection == "keys":
        key_id = KEYS.get(scope_name)
        if key_id is None:
            return None
        if ep.method == "POST" and ep.path == "/api/keys":
            team = {"own-team": "team-a", "other-team": "team-b"}.get(scope_name)
            user = "u-me" if scope_name == "own-user" else None
            return "/api/keys", {"id": f"vk-new-{n}", "team_id": team, "user_id": user}, None
        path = ep.path.replace("{key_id}", key_id)
        body = {} if ep.body is not None else None
        if ep.method == "PATCH":
            body = {"description": f"changed {n}"}
        return path, body, None
    if collection == "budgets":
        key_id = BUDGET_KEYS.get(scope_name)
        if scope_name == "own-team-over-cap" and ep.method in ("POST", "PUT"):
            key_id = "vk-team-a"  # a team lead's key budget above the team's cap of $10
        if key_id is None:
            return None
        over = scope_name == "own-team-over-cap"
        budget_id = f"b-{scope_name}" if ep.method != "POST" else f"b-new-{n}"
        body = {"id": budget_id, "virtual_key_id": key_id, "max_limit": 100 if over else 1, "reset_duration": "1d"}
        path = ep.path.replace("{object_id}", budget_id)
        return path, body if ep.body is not None else None, None
    if collection in _OBJECT_BODIES:
        if scope_name != "global":
            return None
        make = _OBJECT_BODIES[collection]
        if ep.method == "POST":
            new_id = f"new-{n}" if collection != "provider-keys" else f"fake2:new-{n}"
            return ep.path, make(new_id), None
        object_id = _EXISTING[collection]
        if ep.method == "DELETE":  # delete something deletable and harmless
            object_id = {"providers": "fake2-spare", "provider-keys": "fake2:spare"}.get(collection, f"spare-{n}")
        return ep.path.replace("{object_id}", object_id), make(object_id) if ep.body is not None else None, None
    if collection == "sessions" and "{session_id}" in ep.path:
        key_id = SESSION_KEYS.get(scope_name)
        return (ep.path.replace("{session_id}", ledger_id(key_id, f"s-{key_id}")), None, None) if key_id else None
    if collection in ("spend", "sessions"):
        query = {
            "own-team": {"team": "team-a"},
            "other-team": {"team": "team-b"},
            "own-user": {"user": "u-me"},
            "other-user": {"user": "u-other"},
        }
        return (ep.path, None, query.get(scope_name, {})) if scope_name in (*query, "global") else None
    if collection == "users":
        if ep.path == "/api/users":
            return (ep.path, None, None) if scope_name == "global" else None
        user_id = USERS.get(scope_name)
        return (ep.path.replace("{user_id}", user_id), None, None) if user_id else None
    if collection == "stops":
        if ep.method == "GET":
            return (ep.path, None, None) if scope_name == "global" else None
        body = {
            "global": {"scope": "org", "reason": f"matrix {n}"},
            "own-team": {"scope": "team", "target": "team-a", "reason": f"matrix {n}"},
            "other-team": {"scope": "key", "target": "vk-team-b", "reason": f"matrix {n}"},
            "own-user": {"scope": "session", "target": f"s-{n}", "key_id": "vk-mine", "reason": f"matrix {n}"},
        }.get(scope_name)
        return (ep.path, body, None) if body is not None else None
    if collection == "tokens":
        if scope_name != "global":
            return None
        if ep.method == "POST":
            return ep.path, {"id": f"tok-new-{n}", "roles": ["viewer"]}, None
        return ep.path.replace("{token_id}", "tok-1"), None, None
    return (ep.path, None, None) if scope_name == "global" else None


def http_scope(ep: Endpoint, scope_name: str) -> tuple[str, str]:
    """(action, scope) the matrix expects for this request: budgets' team-level ones are caps."""
    if ep.path.startswith("/api/budgets") and ep.method != "GET" and scope_name == "global":
        return "budgets.write", "global"
    if ep.path in ("/api/spend", "/api/sessions", "/api/sessions/spend") and scope_name == "global":
        return ep.action, "global"
    if ep.path == "/api/keys" and ep.method == "GET":
        return ep.action, "global"
    if ep.path in ("/api/budgets", "/api/users") and ep.method == "GET":
        return ep.action, "global"
    return ep.action, scope_name


async def spare(c: Client, collection: str, n: int) -> None:
    """The object a DELETE request removes, recreated before each."""
    if collection == "providers":
        await c.put("/api/providers/fake2-spare", json={"name": "fake2-spare", "type": "fake"})
    elif collection == "provider-keys":
        await c.put("/api/provider-keys/fake2:spare", json={"provider": "fake2", "name": "spare", "value": "env.HOME"})
    elif collection in _OBJECT_BODIES:
        await c.post(f"/api/{collection}", json=_OBJECT_BODIES[collection](f"spare-{n}"))


async def test_http_matrix(tmp_path: Path) -> None:
    services, c = await start(admin_config(tmp_path))
    try:
        await seed(c)
        await seed_sessions(services)
        for user_id in USERS.values():  # people, as SCIM provisions them
            await services.identity.directory.put(USER, user_id, {"userName": f"{user_id}@example.test"}, "scim")
        walked = 0
        reached: set[tuple[str, str]] = set()
        for n, (ep, role, scope_name) in enumerate(itertools.product(admin_endpoints(), ROLES, SCOPES)):
            made = request_for(ep, scope_name, n)
            if made is None:
                continue
            path, body, query = made
            if ep.method == "DELETE":
                await spare(c, ep.path.split("/")[2], n)
            if ep.method == "DELETE" and ep.path.startswith("/api/tokens"):
                await c.post("/api/tokens", json={"id": "tok-1", "roles": ["viewer"]})
            if ep.path.startswith("/api/budgets") and ep.method == "DELETE":
                await c.put(
                    path,
                    json={
                        "id": path.rsplit("/", 1)[1],
                        "virtual_key_id": BUDGET_KEYS[scope_name],
                        "max_limit": 1,
                        "reset_duration": "1d",
                    },
                )
            reply = await c.request(ep.method, path, json=body, query=query, token=as_role(role, "team-a", "u-me"))
            action, scope = http_scope(ep, scope_name)
            want = expected(role, action, scope)
            if (
                ep.method == "GET"
                and ep.path in ("/api/keys", "/api/budgets", "/api/users", "/api/stops")
                and EXPECTED[action][ROLES.index(role)] != N
            ):
                want = True  # listings filter what the caller may see instead of refusing
            if ep.path in ("/api/spend", "/api/sessions", "/api/sessions/spend"):
                # A report is restricted to what the caller may see; a filter outside it is refused.
                grant = EXPECTED[action][ROLES.index(role)]
                want = (
                    grant == A
                    or (grant == T and scope_name != "other-team")
                    or (grant == S and scope_name != "other-user")
                )
            assert (reply.status != 403) is want, (ep.method, ep.path, role, scope_name, reply.status, reply.body)
            assert reply.status < 500, (ep.method, ep.path, reply.body)
            walked += 1
            reached.add((ep.method, ep.path))
        assert walked > 500
        missing = {(ep.method, ep.path) for ep in admin_endpoints()} - reached
        assert not missing, f"endpoints the matrix does not reach: {missing}"
    finally:
        await services.stop()


async def test_every_endpoint_needs_a_credential(tmp_path: Path) -> None:
    config = admin_config(tmp_path)
    # Hundreds of refusals from one address: without this, the failure throttle answers 429
    # after the first few dozen (tests/admin/test_auth_failures.py covers that).
    config.setdefault("auth", {})["guard"] = {"throttle": False}
    services, c = await start(config)
    try:
        for ep in admin_endpoints():
            path = ep.path
            for name in ("key_id", "object_id", "token_id", "user_id"):
                path = path.replace("{" + name + "}", "x")
            for token in (None, "not-a-known-credential"):
                reply = await c.request(ep.method, path, json={}, token=token)
                assert reply.status == 401, (ep.method, ep.path, token, reply.status)
        assert (await c.get("/api/openapi.json", token=None)).status == 200  # the document is public
    finally:
        await services.stop()


# -- the console: the same rules, the same matrix -----------------------------------------------
# Every console endpoint names an admin API action (an action form names the very admin endpoint
# whose handler it runs); each is walked for every role and scope, and must refuse (403) exactly
# where EXPECTED, the table the admin API is checked against, says so.


def test_every_console_endpoint_has_the_admin_apis_rule() -> None:
    from sluice.http.console import console_endpoints

    admin = {(ep.method, ep.path): ep for ep in admin_endpoints()}
    for ep in console_endpoints():
        assert ep.action in EXPECTED, f"console {ep.method} {ep.path}: action {ep.action!r} has no expected rule"
        if ep.admin is not None:
            assert ep.admin in admin, f"console {ep.path} runs {ep.admin}, which the admin API does not have"
            assert admin[ep.admin].action == ep.action, (ep.path, ep.action, admin[ep.admin].action)
        if ep.method == "POST":
            assert ep.admin is not None or ep.action.endswith(".read"), (
                f"{ep.path}: a change not made by an API handler"
            )


def console_request(ep: Any, scope_name: str, n: int) -> tuple[str, dict[str, str]] | None:
    """(path, form) reaching a resource of this scope through a console endpoint, or None."""
    path, form = ep.path, {}
    if "{key_id}" in path or (ep.path == "/console/keys" and ep.method == "POST"):
        key_id = KEYS.get(scope_name)
        if key_id is None:
            return None
        if ep.method == "POST" and ep.path == "/console/keys":
            team = {"own-team": "team-a", "other-team": "team-b"}.get(scope_name, "")
            return path, {
                "id": f"vk-console-{n}",
                "team_id": team,
                "user_id": "u-me" if scope_name == "own-user" else "",
            }
        path = path.replace("{key_id}", key_id)
        if path.endswith("/budgets"):
            form = {"id": f"b-console-{n}", "max_limit": "1", "reset_duration": "1d"}
        return path, form
    if "{budget_id}" in path:
        over = scope_name == "own-team-over-cap"
        budget = "b-own-team" if over else f"b-{scope_name}"
        if scope_name not in (*BUDGET_KEYS, "own-team-over-cap"):
            return None
        return path.replace("{budget_id}", budget), {"max_limit": "100" if over else "1", "reset_duration": "1d"}
    if "{request_id}" in path:
        return (path.replace("{request_id}", "req-unknown"), form) if scope_name == "global" else None
    if "{session_id}" in path:
        key_id = SESSION_KEYS.get(scope_name)
        return (path.replace("{session_id}", ledger_id(key_id, f"s-{key_id}")), form) if key_id else None
    if path.startswith("/console/stops") and ep.method == "POST":
        made = request_for(next(e for e in admin_endpoints() if (e.method, e.path) == ep.admin), scope_name, n)
        return (path, {k: str(v) for k, v in made[1].items()}) if made is not None and made[1] else None
    return (path, form) if scope_name == "global" else None


async def test_console_http_matrix(tmp_path: Path) -> None:
    from sluice.http.console import console_endpoints
    from tests.console.conftest import Browser

    config = admin_config(tmp_path)
    config["auth"] = {"guard": {"throttle": False}, "session": {"secure_cookie": False}}
    services, c = await start(config)
    try:
        await seed(c)
        await seed_sessions(services)
        for user_id in USERS.values():
            await services.identity.directory.put(USER, user_id, {"userName": f"{user_id}@example.test"}, "scim")
        browsers = {}
        for role in ROLES:
            browsers[role] = Browser(c.app, linger_s=0.05)
            assert (await browsers[role].sign_in(as_role(role, "team-a", "u-me"))).status == 303
        walked = 0
        reached: set[tuple[str, str]] = set()
        for n, (ep, role, scope_name) in enumerate(itertools.product(console_endpoints(), ROLES, SCOPES)):
            made = console_request(ep, scope_name, n)
            if made is None:
                continue
            path, form = made
            b = browsers[role]
            if ep.method == "POST":
                page = await b.get("/console/me")  # any page: the form's CSRF token
                reply = await b.post(path, {"csrf": page.csrf(), **form})
            else:
                reply = await b.get(path)
            grant = EXPECTED[ep.action][ROLES.index(role)]
            want = grant != N if ep.listing else expected(role, ep.action, scope_name)
            assert (reply.status != 403) is want, (
                ep.method,
                ep.path,
                role,
                scope_name,
                reply.status,
                reply.text[-400:],
            )
            assert reply.status < 500, (ep.method, ep.path, reply.text[-400:])
            walked += 1
            reached.add((ep.method, ep.path))
        missing = {(ep.method, ep.path) for ep in console_endpoints()} - reached
        assert not missing, f"console endpoints the matrix does not reach: {missing}"
        assert walked > 150
    finally:
        await services.stop()
