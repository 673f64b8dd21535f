"""The gateway sign-in protocol (docs/design/claude-gateway-protocol.md) against Sluice and the real
oidc-provider: device authorization, the browser step through the provider, the token endpoint's
grants, the person's key on every request, and the abuses each step must refuse."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from tests.integration.oidc_support import OidcProvider
from tests.integration.signin_stack import HAIKU, SCIM_TOKEN, signin_stack
from tests.integration.signin_support import approve_in_browser
from tests.support import GatewayThread

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
FIXTURES = Path(__file__).parent.parent / "fixtures" / "claude_gateway"
MANAGED = {
    "permissions": {"deny": ["Bash(curl:*)", "Read(./.env)"]},
    "env": {"CLAUDE_CODE_ENABLE_TELEMETRY": "1", "TEAM_NOTE": "caf\u00e9"},
    "model": HAIKU,
}
ACCOUNTS = {
    "dana": {"email": "dana@example.com", "name": "Dana Dev", "groups": ["engineering"]},
    "rita": {"email": "rita@example.com", "name": "Rita", "groups": ["engineering"]},
    "olga": {"email": "olga@example.com", "name": "Olga Outsider", "groups": ["sales"]},
    "00u-sid": {"email": "sid@example.com", "name": "Sid", "groups": []},
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OidcProvider, GatewayThread]]:
    profiles = [
        {
            "id": "developers",
            "groups": ["engineering"],
            "provider_configs": [{"provider": "anthropic", "allowed_models": [HAIKU]}],
            "managed_settings": MANAGED,
        }
    ]
    guard = {"guard": {"failures_burst": 30, "failures_per_minute": 1}}
    with signin_stack(tmp_path_factory.mktemp("signin"), ACCOUNTS, profiles, auth=guard) as stack:
        yield stack.idp, stack.gw


def device(gw: GatewayThread) -> dict[str, Any]:
    # Exactly what Claude Code 2.1.332 sends (tests/fixtures/claude_gateway/signin.json).
    resp = httpx2.post(f"{gw.base_url}/oauth/device_authorization", data={"surface": "claude_code"})
    assert resp.status_code == 200 and resp.headers["cache-control"] == "no-store"
    return dict(resp.json())


def poll(gw: GatewayThread, device_code: str) -> httpx2.Response:
    return httpx2.post(f"{gw.base_url}/oauth/token", data={"grant_type": DEVICE_GRANT, "device_code": device_code})


def sign_in(gw: GatewayThread, login: str) -> dict[str, Any]:
    auth = device(gw)
    page = approve_in_browser(gw.base_url, auth["verification_uri_complete"], login)
    assert page.status_code == 200 and "signed in" in page.text.lower(), page.text
    tokens = poll(gw, auth["device_code"])
    assert tokens.status_code == 200, tokens.text
    return dict(tokens.json())


def ask(gw: GatewayThread, token: str) -> Any:
    client = anthropic.Anthropic(base_url=gw.base_url, auth_token=token, max_retries=0)
    return client.messages.create(model=HAIKU, max_tokens=20, messages=[{"role": "user", "content": "hi"}])


def refresh(gw: GatewayThread, refresh_token: str) -> httpx2.Response:
    return httpx2.post(
        f"{gw.base_url}/oauth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def test_metadata_has_what_the_client_reads(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    doc = httpx2.get(f"{gw.base_url}/.well-known/oauth-authorization-server").json()
    reference = json.loads(json.load((FIXTURES / "signin.json").open())["exchanges"][0]["response"]["body"])
    assert set(reference) <= set(doc)  # every field the reference gateway serves
    assert doc["gateway_protocol_version"] == 1 and doc["issuer"] == gw.base_url
    for name in ("device_authorization_endpoint", "token_endpoint", "revocation_endpoint"):
        assert doc[name].startswith(gw.base_url + "/")  # same origin, else the client ignores it
    # The code flow for /mcp is advertised too; the client reads only its two endpoints and ignores the
    # rest (tests/fixtures/claude_gateway/reference_protocol.md, Discovery).
    assert doc["authorization_endpoint"] == f"{gw.base_url}/authorize"


def test_sign_in_then_a_request_is_metered_to_the_person(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    auth = device(gw)
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", auth["user_code"])
    assert auth["verification_uri"] == f"{gw.base_url}/device" and auth["interval"] == 5
    assert len(auth["device_code"]) >= 43  # 256 bits
    first = poll(gw, auth["device_code"])
    assert first.status_code == 400 and first.json() == {"error": "authorization_pending"}
    fast = poll(gw, auth["device_code"])  # at once again: faster than the interval
    assert fast.status_code == 400 and fast.json()["error"] == "slow_down"
    page = approve_in_browser(gw.base_url, auth["verification_uri_complete"], "dana")
    assert "dana@example.com" in page.text
    # The next poll within the interval is still too fast; redeem as a patient client would.
    grant = gw.call(gw.services.store.grant_by("user_code", auth["user_code"]))
    gw.call(gw.services.store.swap_grant(grant, _replace(grant, last_poll=0.0)))
    tokens = poll(gw, auth["device_code"]).json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900 and tokens["refresh_token"]
    assert ask(gw, tokens["access_token"]).content[0].text.startswith("echo")
    [key] = gw.call(gw.services.identity.directory.keys_of(grant.user_id or ""))
    logged = [r for r in gw.request_log() if r["virtual_key_id"] == key.id]
    assert logged and logged[0]["status"] == 200  # spent on Dana's own key (her profile's limits)
    replay = poll(gw, auth["device_code"])  # a device code redeems once
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def _replace(grant: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(grant, **changes)


def test_refresh_rotates_and_a_reused_refresh_token_ends_the_sign_in(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    tokens = sign_in(gw, "rita")
    fresh = refresh(gw, tokens["refresh_token"])
    assert fresh.status_code == 200, fresh.text
    pair = fresh.json()
    assert pair["refresh_token"] != tokens["refresh_token"] and pair["access_token"] != tokens["access_token"]
    assert ask(gw, pair["access_token"]).content[0].text.startswith("echo")
    stolen = refresh(gw, tokens["refresh_token"])  # the spent one again: a copy exists somewhere
    assert stolen.status_code == 401 and stolen.json()["error"] == "invalid_grant"
    with pytest.raises(anthropic.AuthenticationError) as refused:
        ask(gw, pair["access_token"])  # the whole sign-in ended, at the next request
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert refresh(gw, pair["refresh_token"]).status_code == 401


def test_forged_and_foreign_tokens_are_refused(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    tokens = sign_in(gw, "dana")
    payload, _, mac = tokens["access_token"].removeprefix("sgw.").partition(".")
    forged = "sgw." + payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    for bad in (forged, "sgw.e30.AAAA", "sgw.", tokens["refresh_token"]):
        with pytest.raises(anthropic.AuthenticationError):
            ask(gw, bad)
    assert refresh(gw, tokens["access_token"]).status_code == 401  # an access token is no refresh token
    assert poll(gw, "not-a-device-code").json()["error"] == "invalid_grant"
    other = httpx2.post(f"{gw.base_url}/oauth/token", data={"grant_type": "password", "username": "dana"})
    assert other.status_code == 400 and other.json()["error"] == "unsupported_grant_type"


def test_revocation_ends_access_at_the_next_request(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    tokens = sign_in(gw, "dana")
    assert ask(gw, tokens["access_token"])
    resp = httpx2.post(f"{gw.base_url}/oauth/revoke", data={"token": tokens["access_token"]})
    assert resp.status_code == 200
    with pytest.raises(anthropic.AuthenticationError):
        ask(gw, tokens["access_token"])
    assert refresh(gw, tokens["refresh_token"]).status_code == 401
    assert httpx2.post(f"{gw.base_url}/oauth/revoke", data={"token": "unknown"}).status_code == 200  # RFC 7009 2.2


def test_scim_deactivation_ends_access_and_refresh(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    scim = httpx2.Client(base_url=f"{gw.base_url}/scim/v2", headers={"authorization": f"Bearer {SCIM_TOKEN}"})
    with scim:
        uid = scim.post("/Users", json={"userName": "sid@example.com", "externalId": "00u-sid"}).json()["id"]
        scim.post("/Groups", json={"displayName": "engineering", "members": [{"value": uid}]})
        tokens = sign_in(gw, "00u-sid")
        assert ask(gw, tokens["access_token"])
        off = {"Operations": [{"op": "replace", "value": {"active": False}}]}
        assert scim.patch(f"/Users/{uid}", json=off).status_code == 200
    with pytest.raises((anthropic.AuthenticationError, anthropic.PermissionDeniedError)) as refused:
        ask(gw, tokens["access_token"])
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert refresh(gw, tokens["refresh_token"]).status_code == 401


def test_a_person_without_a_profile_cannot_approve(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    auth = device(gw)
    page = approve_in_browser(gw.base_url, auth["verification_uri_complete"], "olga")
    assert page.status_code == 400 and "no access profile" in page.text
    assert poll(gw, auth["device_code"]).json()["error"] in ("authorization_pending", "slow_down")


def client_checksum(settings: dict[str, Any]) -> str:
    """The If-None-Match value Claude Code computes from the settings it holds (the reference
    gateway's /protocol, "Managed settings"): sha256 of the key-sorted JSON without whitespace."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_managed_settings_follow_the_profile_with_etags(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    url = f"{gw.base_url}/managed/settings"
    anonymous = httpx2.get(url)
    assert anonymous.status_code == 401 and anonymous.json()["type"] == "error"
    assert anonymous.headers["x-should-retry"] == "false"
    tokens = sign_in(gw, "dana")
    auth = {"authorization": f"Bearer {tokens['access_token']}"}
    first = httpx2.get(url, headers=auth)
    assert first.status_code == 200, first.text
    doc = first.json()
    assert doc["settings"] == MANAGED and set(doc) == {"uuid", "checksum", "settings"}
    assert doc["checksum"] == client_checksum(MANAGED) and first.headers["etag"] == f'"{doc["checksum"]}"'
    assert "no-store" not in first.headers["cache-control"]  # no-store + x-cc-gateway-version means more
    same = httpx2.get(url, headers={**auth, "if-none-match": f'"{doc["checksum"]}"'})
    assert same.status_code == 304 and same.headers["etag"] == first.headers["etag"]
    assert httpx2.get(url, headers={**auth, "if-none-match": "*"}).status_code == 200  # a probe: answered in full
    assert httpx2.get(url, headers={**auth, "if-none-match": '"sha256:stale"'}).status_code == 200

    # An admin edits the profile: a configuration event, a new version of the document.
    store = gw.services.store
    [obj] = [o for o in gw.call(store.list_objects()) if o.kind == "access_profile" and o.id == "developers"]
    edited = {**MANAGED, "permissions": {"deny": ["Bash(curl:*)", "Bash(wget:*)"]}}
    event = gw.call(store.put_object(_replace(obj, body={**obj.body, "managed_settings": edited}), "admin:test"))
    assert event is not None and event.kind == "access_profile"
    gw.call(gw.services.profiles.reload())
    changed = httpx2.get(url, headers={**auth, "if-none-match": f'"{doc["checksum"]}"'})
    assert changed.status_code == 200 and changed.json()["checksum"] == client_checksum(edited)
    assert changed.json()["uuid"] == doc["uuid"]  # the same policy, a new version
    gw.call(store.put_object(obj, "admin:test"))  # as it was, for the other tests
    gw.call(gw.services.profiles.reload())


def test_model_discovery_lists_the_persons_models(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    tokens = sign_in(gw, "rita")
    headers = {"authorization": f"Bearer {tokens['access_token']}", "anthropic-version": "2023-06-01"}
    listed = httpx2.get(f"{gw.base_url}/v1/models", headers=headers)
    assert listed.status_code == 200, listed.text
    assert [m["id"] for m in listed.json()["data"]] == [HAIKU]  # the profile's allowlist, no more
    forged = {**headers, "authorization": "Bearer sgw.e30.AAAA"}
    assert httpx2.get(f"{gw.base_url}/v1/models", headers=forged).status_code == 401


def otlp_metrics(cost: float, email: str) -> Any:
    """An export as Claude Code's OTLP exporter builds it: claude_code.cost.usage, a delta sum."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    def attr(key: str, value: str) -> KeyValue:
        return KeyValue(key=key, value=AnyValue(string_value=value))

    point = NumberDataPoint(
        as_double=cost,
        time_unix_nano=1_796_000_000_000_000_000,
        attributes=[attr("model", HAIKU), attr("user.email", email)],
    )
    metric = Metric(name="claude_code.cost.usage", unit="USD", sum=Sum(data_points=[point], aggregation_temporality=1))
    resource = Resource(attributes=[attr("service.name", "claude-code")])
    return ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=[metric])])]
    )


def test_agent_telemetry_is_stored_for_the_signed_in_person(env: tuple[OidcProvider, GatewayThread]) -> None:
    import datetime as dt
    import gzip

    from google.protobuf import json_format

    _, gw = env
    tokens = sign_in(gw, "rita")
    auth = {"authorization": f"Bearer {tokens['access_token']}"}
    # The client's own user.email says someone else: the token decides who it was.
    export = otlp_metrics(0.0123, "ceo@example.com")
    proto = {**auth, "content-type": "application/x-protobuf"}
    resp = httpx2.post(f"{gw.base_url}/v1/metrics", content=export.SerializeToString(), headers=proto)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-protobuf")
    as_json = json_format.MessageToJson(otlp_metrics(0.5, "rita@example.com")).encode()
    zipped = {**auth, "content-type": "application/json", "content-encoding": "gzip"}
    assert httpx2.post(f"{gw.base_url}/v1/metrics", content=gzip.compress(as_json), headers=zipped).json() == {}
    grant = gw.call(gw.services.store.grant_by("refresh_hash", _sha(tokens["refresh_token"])))
    since = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    rows = gw.call(gw.services.store.agent_metrics(grant.user_id, since))
    assert [(r.metric, r.value, r.service, r.unit) for r in rows][-2:] == [
        ("claude_code.cost.usage", 0.0123, "claude-code", "USD"),
        ("claude_code.cost.usage", 0.5, "claude-code", "USD"),
    ]
    assert rows[-1].virtual_key_id == grant.key_id and rows[-2].attributes["model"] == HAIKU
    assert httpx2.post(f"{gw.base_url}/v1/logs", content=b"", headers=proto).status_code == 200  # acknowledged

    anonymous = httpx2.post(f"{gw.base_url}/v1/metrics", content=export.SerializeToString())
    assert anonymous.status_code == 401
    garbage = httpx2.post(f"{gw.base_url}/v1/metrics", content=b"\xff\xff\xff", headers=proto)
    assert garbage.status_code == 400
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))  # 8 MiB of zeros in a few KiB
    inflated = httpx2.post(f"{gw.base_url}/v1/metrics", content=bomb, headers={**proto, "content-encoding": "gzip"})
    assert inflated.status_code == 413
    other = httpx2.post(f"{gw.base_url}/v1/metrics", content=b"x", headers={**auth, "content-type": "text/plain"})
    assert other.status_code == 415


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def later(gw: GatewayThread, seconds: float) -> Any:
    """The gateway's sign-in as it will judge the same state `seconds` from now."""
    import time

    from sluice.gateway_signin.service import GatewaySignin

    now = gw.services.identity.gateway
    assert now is not None
    return GatewaySignin(
        now.config,
        gw.services.store,
        gw.services.identity.directory,
        gw.services.identity.signer,  # type: ignore[arg-type]
        gw.services.profiles,
        clock=lambda: time.time() + seconds,
    )


def test_expired_codes_and_tokens_are_refused(env: tuple[OidcProvider, GatewayThread]) -> None:
    from sluice.core.errors import SluiceError
    from sluice.gateway_signin.service import OAuthError

    _, gw = env
    waiting = device(gw)
    with pytest.raises(OAuthError) as late:  # the person never came: the code ran out (device_ttl_s)
        gw.call(later(gw, 601).redeem(waiting["device_code"]))
    assert late.value.error == "expired_token"
    tokens = sign_in(gw, "dana")
    assert gw.call(later(gw, 899).key_for(tokens["access_token"])).user_id  # still inside access_ttl_s
    with pytest.raises(SluiceError):
        gw.call(later(gw, 901).key_for(tokens["access_token"]))
    with pytest.raises(OAuthError) as stale:  # unused for longer than refresh_ttl_s
        gw.call(later(gw, 7 * 24 * 3600 + 1).refresh(tokens["refresh_token"]))
    assert stale.value.error == "invalid_grant" and stale.value.status == 401


def test_agent_reported_spend_stands_beside_gateway_spend(env: tuple[OidcProvider, GatewayThread]) -> None:
    """What the agent reported (OTLP) next to what the gateway metered, per person; a day the
    gateway saw nothing but the agent reported spend is a row of its own."""
    import datetime as dt

    from sluice.storage.records import RequestQuery

    _, gw = env
    tokens = sign_in(gw, "dana")
    assert ask(gw, tokens["access_token"])
    grant = gw.call(gw.services.store.grant_by("refresh_hash", _sha(tokens["refresh_token"])))
    since = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)

    def report(group_by: str) -> list[dict[str, Any]]:
        gw.call(gw.services.recorder.flush())  # the request log is written behind the answer
        query = RequestQuery(since=since, owner_user_id=grant.user_id)
        return list(gw.call(gw.services.store.spend_report(group_by, query)))

    [before] = report("user")
    headers = {"authorization": f"Bearer {tokens['access_token']}", "content-type": "application/x-protobuf"}
    export = otlp_metrics(0.25, "dana@example.com").SerializeToString()
    assert httpx2.post(f"{gw.base_url}/v1/metrics", content=export, headers=headers).status_code == 200
    [after] = report("user")
    assert after["group"] == grant.user_id and after["requests"] == before["requests"] >= 1
    assert after["agent_cost_pico"] - before["agent_cost_pico"] == 250_000_000_000
    reported_day = dt.datetime.fromtimestamp(1_796_000_000, dt.UTC).date().isoformat()  # otlp_metrics' point
    [agent_only] = [r for r in report("day") if r["group"] == reported_day]
    assert agent_only["requests"] == 0 and agent_only["cost_pico"] == 0 and agent_only["agent_cost_pico"] > 0


def test_an_admin_lists_and_revokes_one_sign_in(env: tuple[OidcProvider, GatewayThread]) -> None:
    from sluice.auth.admin_tokens import set_bootstrap

    _, gw = env
    admin_token = "signin-admin-bootstrap-0123456789abcdef"
    gw.call(set_bootstrap(gw.services.store, admin_token, "test", replace=True))
    admin = httpx2.Client(base_url=f"{gw.base_url}/api", headers={"authorization": f"Bearer {admin_token}"})
    laptop, desktop = sign_in(gw, "rita"), sign_in(gw, "rita")
    grant = gw.call(gw.services.store.grant_by("refresh_hash", _sha(laptop["refresh_token"])))
    with admin:
        listed = admin.get(f"/users/{grant.user_id}/signins")
        assert listed.status_code == 200, listed.text
        mine = {s["id"]: s for s in listed.json()["items"]}
        assert mine[grant.id]["status"] == "active" and mine[grant.id]["surface"] == "claude_code"
        assert "refresh_hash" not in mine[grant.id] and "device_hash" not in mine[grant.id]
        ended = admin.post(f"/users/{grant.user_id}/signins/{grant.id}/revoke")
        assert ended.status_code == 200 and ended.json()["status"] == "revoked"
        # Another person's sign-in cannot be revoked through this person's path.
        dana = sign_in(gw, "dana")
        other = gw.call(gw.services.store.grant_by("refresh_hash", _sha(dana["refresh_token"])))
        assert admin.post(f"/users/{grant.user_id}/signins/{other.id}/revoke").status_code == 404
        anonymous = httpx2.post(f"{gw.base_url}/api/users/{grant.user_id}/signins/{grant.id}/revoke")
        assert anonymous.status_code == 401
    with pytest.raises(anthropic.AuthenticationError):
        ask(gw, laptop["access_token"])  # the revoked one, at its next request
    assert refresh(gw, laptop["refresh_token"]).status_code == 401
    assert ask(gw, desktop["access_token"])  # the person's other sign-in stays
    assert ask(gw, dana["access_token"])
    events = [e for e in gw.call(gw.services.store.config_events(50)) if e.kind == "gateway_signin"]
    assert events and events[0].object_id == grant.id and events[0].after == {"status": "revoked"}


def test_the_browser_step_refuses_other_sites_and_guessing(env: tuple[OidcProvider, GatewayThread]) -> None:
    _, gw = env
    auth = device(gw)
    cross = httpx2.post(
        f"{gw.base_url}/device", data={"user_code": auth["user_code"]}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    bare = httpx2.post(f"{gw.base_url}/device", data={"user_code": auth["user_code"]})  # no Origin, no Sec-Fetch
    assert bare.status_code == 403
    page = httpx2.get(auth["verification_uri_complete"])
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"
    assert "<script" not in page.text  # never submits the code by itself (RFC 8628 5.4)
    # Runs last: it spends this address's failure budget (30, refilled at 1 a minute).
    statuses = []
    for n in range(40):
        guess = "BCDF-" + "".join("BCDFGHJKLM"[int(d)] for d in f"{n:04d}")
        resp = httpx2.post(f"{gw.base_url}/device", data={"user_code": guess}, headers={"origin": gw.base_url})
        statuses.append(resp.status_code)
        if resp.status_code == 429:
            break
    assert statuses[0] == 400 and statuses[-1] == 429 and set(statuses[:-1]) == {400}
    # Even the right code now waits: guessing does not get cheaper by mixing in a real code.
    right = httpx2.post(f"{gw.base_url}/device", data={"user_code": auth["user_code"]}, headers={"origin": gw.base_url})
    assert right.status_code == 429
