"""Model names are caller input that several providers put in URL paths. Through every surface
that takes a model (in the body or the URL), a crafted name is refused with a 400 in the surface's
format before any upstream call; accepted names reach exactly the upstream path the provider's
docs give (the fake records the raw path it saw); and each provider escapes the name it is handed,
so even a name that slipped past the gateway's check could not change the path, query or host."""

from __future__ import annotations

import contextlib
import http.client
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import pytest

from sluice.core.errors import SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.providers.base import Provider, ProviderCall
from sluice.providers.registry import build_providers
from sluice.settings import parse_config
from sluice.upstream.client import UpstreamClient
from tests.contract.cloud_setup import AWS, AZURE_KEY
from tests.fakes.cloud import CloudFakeThread, CloudSettings, make_service_account
from tests.support import GatewayThread

KEYS = {p: f"sk-sluice-model-names-{p}".ljust(32, "0") for p in ("gemini", "bedrock", "vertex", "azure", "together")}
BODY_MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # a vendor's namespaced name, sent in the body


def names_config(base: str, service_account: dict[str, str]) -> dict[str, Any]:
    return {
        "providers": {
            "gemini": {"base_url": base, "keys": [{"name": "gemini-main", "value": "AIza-upstream-gemini-0"}]},
            "bedrock": {
                "base_url": base,
                "region": AWS.region,
                "access_key_id": AWS.access_key_id,
                "secret_access_key": AWS.secret_access_key,
                "session_token": AWS.session_token,
                "models": {
                    "claude-haiku-4-5": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                    "claude-haiku-4-5-20251001": "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                },
            },
            "vertex": {
                "base_url": base,
                "region": "us-east5",
                "credentials": orjson.dumps(service_account).decode(),
                "models": {"claude-haiku-4-5": "claude-haiku-4-5@20251001"},
            },
            "azure": {
                "base_url": base,
                "api_version": "2024-10-21",
                "deployments": {"gpt-4o-mini": "chat-prod"},
                "keys": [{"name": "azure-main", "value": AZURE_KEY}],
            },
            "together": {
                "type": "openai_compatible",
                "base_url": base + "/v1",
                "keys": [{"name": "together-main", "value": "sk-upstream-together-0"}],
            },
        },
        # One key per provider, each with a wildcard grant, so no allowlist stands between a
        # crafted name and the provider.
        "virtual_keys": [
            {"id": f"vk-{p}", "value": KEYS[p], "provider_configs": [{"provider": p}]}
            for p in ("gemini", "bedrock", "vertex", "azure", "together")
        ],
        "routing": {"retries": {"attempts": 1}},
    }


class Stack:
    def __init__(self, gateway: GatewayThread, fake: CloudFakeThread, config: dict[str, Any]) -> None:
        self.gateway, self.fake, self.config = gateway, fake, config

    def post(self, provider: str, target: str, doc: dict[str, Any]) -> tuple[int, Any]:
        """POSTs to the exact request-target given (no client-side normalisation)."""
        self.fake.upstream.reset()
        return raw_post(self.gateway.base_url, target, orjson.dumps(doc), KEYS[provider])


def raw_post(base: str, target: str, body: bytes, key: str) -> tuple[int, Any]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        sent = {"content-type": "application/json", "authorization": f"Bearer {key}"}
        conn.request("POST", target, body=body, headers=sent)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, orjson.loads(data)
    except orjson.JSONDecodeError:
        return resp.status, data


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    account = make_service_account("sluice-test")
    settings = CloudSettings(aws=AWS, vertex=account, azure_key=AZURE_KEY, azure_deployments={"chat-prod"})
    with CloudFakeThread(settings) as fake:
        config = names_config(fake.base_url, account.info)
        with GatewayThread(config, tmp_path_factory.mktemp("names")) as gateway:
            yield Stack(gateway, fake, config)


# Each crafted name starts like a name the provider serves, so a wildcard grant lets it through
# the allowlist on main: only the name check stands between it and the upstream URL.
CRAFTED = [
    "{m}/../../v1beta/files",
    "{m}/x",
    "{m}?key=attacker",
    "{m}:countTokens?alt=json",
    "{m}#fragment",
    "{m}%2F..%2F..%2Fadmin",
    "{m}%252F..%252Fadmin",
    "{m}%3Fx=1",
    "{m}\\..\\admin",
    "{m} x",
    "{m}\r\nHost: evil.example",
    "{m}\x00",
    "{m}\u202egnp.exe",
    "{m}\u0430",  # a Cyrillic 'a'
    "{m}" + "x" * 300,
    "..",
    ".",
]
MESSAGES = [{"role": "user", "content": "hello"}]


def _crafted(model: str) -> list[str]:
    return [c.format(m=model) for c in CRAFTED]


BODY_CASES = [
    # provider, surface path, provider model prefix, body builder
    ("gemini", "/v1/chat/completions", "gemini-2.5-flash", lambda m: {"model": m, "messages": MESSAGES}),
    ("bedrock", "/v1/messages", "claude-haiku-4-5", lambda m: {"model": m, "max_tokens": 16, "messages": MESSAGES}),
    ("vertex", "/v1/messages", "claude-haiku-4-5", lambda m: {"model": m, "max_tokens": 16, "messages": MESSAGES}),
    ("azure", "/v1/chat/completions", "gpt-4o-mini", lambda m: {"model": m, "messages": MESSAGES}),
]


@pytest.mark.parametrize("provider,surface,model,build", BODY_CASES, ids=[c[0] for c in BODY_CASES])
def test_crafted_body_model_is_refused_before_any_upstream_call(
    stack: Stack, provider: str, surface: str, model: str, build: Any
) -> None:
    for name in _crafted(model):
        status, body = stack.post(provider, surface, build(name))
        assert status == 400, (name, status, body)
        assert "model name" in str(body), body
        assert stack.fake.requests == [], (name, [r.raw_path for r in stack.fake.requests])


GEMINI_SURFACE_NAMES = [
    "gemini-2.5-flash%3Falt=json",  # '?' once decoded
    "gemini-2.5-flash%253Fx",  # double-encoded
    "gemini-2.5-flash%2523x",
    "gemini-2.5-flash%2E%2E",
    "gemini-2.5-flash%20x",
    "gemini-2.5-flash%00",
    "gemini-2.5-flash%5C..%5Cx",
    "..",
]


def test_crafted_gemini_url_model_is_refused_in_gemini_shape(stack: Stack) -> None:
    doc = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
    for name in GEMINI_SURFACE_NAMES:
        for method in ("generateContent", "streamGenerateContent", "countTokens"):
            status, body = stack.post("gemini", f"/v1beta/models/{name}:{method}", doc)
            if status == 404:  # the path itself is not a Gemini route (a decoded '/'): no call either
                assert stack.fake.requests == []
                continue
            assert status == 400, (name, method, status, body)
            assert body["error"]["status"] == "INVALID_ARGUMENT", body  # Gemini's own error shape
            assert stack.fake.requests == [], (name, [r.raw_path for r in stack.fake.requests])


def test_crafted_bedrock_and_vertex_url_models_are_refused(stack: Stack) -> None:
    doc = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": MESSAGES}
    for name in ("claude-haiku-4-5%3Fx=1", "claude-haiku-4-5%2523", "claude-haiku-4-5%20x", "claude%5C..%5Cx"):
        status, body = stack.post("bedrock", f"/bedrock/model/{name}/invoke", doc)
        assert status == 400, (name, status, body)
        assert set(body) == {"message"}, body  # Bedrock's error shape
        assert stack.fake.requests == []
    vertex = "/vertex/v1/projects/p/locations/us-east5/publishers/anthropic/models"
    doc = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 16, "messages": MESSAGES}
    for name in ("claude-haiku-4-5%3Fx=1", "claude-haiku-4-5%2523", "claude-haiku-4-5%0Ax"):
        status, body = stack.post("vertex", f"{vertex}/{name}:rawPredict", doc)
        assert status == 400, (name, status, body)
        assert body["type"] == "error", body  # Anthropic's shape, as Vertex answers it
        assert stack.fake.requests == []
    # count-tokens carries the model in the body: a wrong type is a 400, not the string "None".
    status, body = stack.post("vertex", f"{vertex}/count-tokens:rawPredict", {"model": None, "messages": MESSAGES})
    assert status == 400, body
    assert stack.fake.requests == []


def test_accepted_names_reach_exactly_the_documented_upstream_paths(stack: Stack) -> None:
    status, body = stack.post(
        "gemini",
        "/v1beta/models/gemini-2.5-flash:generateContent",
        {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]},
    )
    assert status == 200, body
    assert [r.raw_path for r in stack.fake.requests] == ["/v1beta/models/gemini-2.5-flash:generateContent"]

    # Bedrock: the id is escaped as botocore does (':' as %3A), and the SigV4 check still passes.
    doc = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": MESSAGES}
    status, body = stack.post("bedrock", "/bedrock/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke", doc)
    assert status == 200, body
    assert [r.raw_path for r in stack.fake.requests] == ["/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke"]

    status, body = stack.post(
        "vertex", "/v1/messages", {"model": "vertex/claude-haiku-4-5", "max_tokens": 16, "messages": MESSAGES}
    )
    assert status == 200, body
    assert [r.raw_path for r in stack.fake.requests] == [
        "/v1/projects/sluice-test/locations/us-east5/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict"
    ]

    status, body = stack.post("azure", "/v1/chat/completions", {"model": "azure/gpt-4o-mini", "messages": MESSAGES})
    assert status == 200, body
    ((sent),) = stack.fake.requests
    assert (sent.raw_path, sent.query) == ("/openai/deployments/chat-prod/chat/completions", "api-version=2024-10-21")

    # A '/' inside the name is fine where the model travels in the body.
    status, body = stack.post(
        "together", "/v1/chat/completions", {"model": f"together/{BODY_MODEL}", "messages": MESSAGES}
    )
    assert status == 200, body
    ((sent),) = stack.fake.requests
    assert sent.raw_path == "/v1/chat/completions"
    assert sent.json()["model"] == BODY_MODEL


# -- each provider escapes the name it is handed (below the gateway's check) -------------------------------------------

HOSTILE = ["..", ".", "a/../../b", "x?key=1", "x#frag", "x%2F..", "x y", "x\\y", "x:countTokens?"]


def _call(provider: Provider, wire: WireFormat, model: str, doc: dict[str, Any]) -> ProviderCall:
    key = provider.keys[0] if provider.keys else None
    return ProviderCall(wire, Operation.GENERATE, model, orjson.dumps(doc), doc, {}, "", False, key)


@pytest.mark.parametrize(
    "name,wire,prefix,suffix,query",
    [
        ("gemini", WireFormat.GEMINI, "/v1beta/models/", ":generateContent", ""),
        ("bedrock", WireFormat.ANTHROPIC_MESSAGES, "/model/", "/invoke", ""),
        (
            "vertex",
            WireFormat.ANTHROPIC_MESSAGES,
            "/v1/projects/sluice-test/locations/us-east5/publishers/anthropic/models/",
            ":rawPredict",
            "",
        ),
        ("azure", WireFormat.OPENAI_CHAT, "/openai/deployments/", "/chat/completions", "api-version=2024-10-21"),
    ],
)
async def test_provider_escapes_the_model_in_its_url(
    stack: Stack, name: str, wire: WireFormat, prefix: str, suffix: str, query: str
) -> None:
    providers = build_providers(parse_config(stack.config), client := UpstreamClient())
    provider = providers[name]
    doc: dict[str, Any] = {"max_tokens": 16, "messages": MESSAGES, "contents": []}
    try:
        for model in HOSTILE:
            if name == "bedrock":
                model = "anthropic." + model  # the Messages path takes Anthropic models only
            stack.fake.upstream.reset()
            with contextlib.suppress(SluiceError):  # the fake refuses the odd name: only the path matters
                await provider.send(_call(provider, wire, model, doc))
            (sent,) = stack.fake.requests
            escaped = quote(model, safe="@" if name == "vertex" else "")
            assert sent.raw_path == prefix + escaped + suffix, model
            assert sent.query == query, model
            assert sent.headers["host"] == urlsplit(stack.fake.base_url).netloc
    finally:
        await client.close()
