"""The bedrock, vertex and azure providers behind the gateway's own surfaces, called with the
official SDKs; the fake cloud upstream verifies SigV4, the service-account JWT and Azure's
api-key and URLs, and answers in each service's wire format."""

from __future__ import annotations

import anthropic
import openai
import orjson
import pytest
from google import genai
from google.genai import types

from sluice.core.canonical import Finish, TextDelta
from sluice.core.types import Operation, WireFormat
from sluice.formats.bedrock_converse import CODEC
from sluice.providers.azure import AzureProvider
from sluice.providers.base import ProviderCall
from sluice.providers.bedrock import BedrockProvider
from sluice.settings import ProviderConfig
from sluice.upstream.client import Timeouts, UpstreamClient
from tests.contract.cloud_setup import (
    ANTHROPIC_KEY,
    AZURE,
    AZURE_ENTRA,
    AZURE_KEY,
    AZURE_V1,
    BEDROCK,
    ENTRA_TOKEN,
    SONNET_ON_BEDROCK,
    SPLIT,
    VERTEX,
    WRONG,
    CloudStack,
    cloud,
)
from tests.contract.conftest import log_entry

__all__ = ["cloud"]


def claude(stack: CloudStack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=stack.gateway.base_url, max_retries=0)


def test_bedrock_invoke_model_signed_with_sigv4(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    raw = claude(cloud, BEDROCK).messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=[{"role": "user", "content": "hello bedrock"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    message = raw.parse()
    assert message.content[0].text == "echo: hello bedrock"  # type: ignore[union-attr]
    (sent,) = cloud.posts("/model/")
    assert sent.path == f"/model/{SONNET_ON_BEDROCK}/invoke"
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/")
    assert sent.headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLE"
    body = sent.json()
    assert body["anthropic_version"] == "bedrock-2023-05-31" and "model" not in body and "stream" not in body
    assert body["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    row = log_entry(cloud.gateway, raw.headers["x-request-id"])
    assert row["provider"] == "bedrock" and row["model"] == "claude-sonnet-4-6"
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0 and row["cost_pico"] > 0


def test_bedrock_stream_is_reframed_as_anthropic_sse_and_metered(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    with claude(cloud, BEDROCK).messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "stream from bedrock"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert text == "echo: stream from bedrock"
    assert final.usage.output_tokens > 0
    (sent,) = cloud.posts("/model/")
    assert sent.path == f"/model/{SONNET_ON_BEDROCK}/invoke-with-response-stream"
    row = log_entry(cloud.gateway, request_id)
    assert row["status"] == 200 and row["output_tokens"] == final.usage.output_tokens


def test_bedrock_api_key_is_sent_as_bearer(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    cloud.gateway.call(_converse_with_api_key(cloud))


async def _converse_with_api_key(cloud: CloudStack) -> None:
    # The Converse path, straight through the provider (no inbound surface speaks Converse yet).
    provider = cloud.gateway.services.providers["bedrock-apikey"]
    assert isinstance(provider, BedrockProvider)
    assert provider.wire_for("mistral-large", Operation.GENERATE) is WireFormat.BEDROCK_CONVERSE
    doc = {"messages": [{"role": "user", "content": [{"text": "hi converse"}]}], "inferenceConfig": {"maxTokens": 9}}
    for stream in (False, True):
        body = orjson.dumps(doc)
        call = ProviderCall(
            WireFormat.BEDROCK_CONVERSE,
            Operation.GENERATE,
            "mistral-large",
            body,
            doc,
            {},
            "",
            stream,
            provider.keys[0],
        )
        reply = await provider.send(call)
        if not stream:
            assert reply.body is not None
            answer = CODEC.decode_response(orjson.loads(reply.body))
            assert answer.content[0].text == "echo: hi converse"  # type: ignore[union-attr]
            continue
        assert reply.chunks is not None and reply.content_type == "application/vnd.amazon.eventstream"
        decoder = CODEC.stream_decoder()
        events = [e for chunk in [c async for c in reply.chunks] for e in decoder.feed(chunk)]
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        assert text == "echo: hi converse" and isinstance(events[-1], Finish)
    paths = [(r.path, r.headers["authorization"]) for r in cloud.posts("/model/")]
    assert paths == [
        ("/model/mistral.mistral-large-2407-v1:0/converse", "Bearer ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl"),
        ("/model/mistral.mistral-large-2407-v1:0/converse-stream", "Bearer ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl"),
    ]


def test_bedrock_errors_are_mapped(cloud: CloudStack) -> None:
    client = claude(cloud, BEDROCK)
    with pytest.raises(anthropic.RateLimitError) as throttled:
        client.messages.create(
            model="claude-haiku-4-5-error-429", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert "ThrottlingException" in str(throttled.value)
    with pytest.raises(anthropic.InternalServerError) as bad_signature:  # 502: the gateway's credential
        claude(cloud, WRONG).messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert bad_signature.value.status_code == 502 and "bedrock-wrong" in str(bad_signature.value)


def test_non_claude_bedrock_models_through_converse_from_any_surface(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = claude(cloud, BEDROCK)
    raw = client.messages.with_raw_response.create(
        model="mistral-large", max_tokens=16, messages=[{"role": "user", "content": "hi mistral"}]
    )
    assert raw.parse().content[0].text == "echo: hi mistral"  # type: ignore[union-attr]
    with client.messages.stream(
        model="mistral-large", max_tokens=16, messages=[{"role": "user", "content": "stream mistral"}]
    ) as stream:
        assert "".join(stream.text_stream) == "echo: stream mistral"
        streamed_id = stream.response.headers["x-request-id"]
    chat = openai.OpenAI(api_key=BEDROCK, base_url=cloud.gateway.base_url + "/v1", max_retries=0)
    answer = chat.chat.completions.create(model="mistral-large", messages=[{"role": "user", "content": "from openai"}])
    assert answer.choices[0].message.content == "echo: from openai"
    sent = cloud.posts("/model/")
    assert [r.path for r in sent] == [
        "/model/mistral.mistral-large-2407-v1:0/converse",
        "/model/mistral.mistral-large-2407-v1:0/converse-stream",
        "/model/mistral.mistral-large-2407-v1:0/converse",
    ]
    first = sent[0].json()
    assert first["messages"] == [{"role": "user", "content": [{"text": "hi mistral"}]}]
    assert first["inferenceConfig"] == {"maxTokens": 16} and "model" not in first
    for request_id in (raw.headers["x-request-id"], streamed_id):
        row = log_entry(cloud.gateway, request_id)
        assert row["provider"] == "bedrock" and row["input_tokens"] == 12 and row["output_tokens"] > 0


def test_sixty_forty_split_between_anthropic_and_bedrock(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = claude(cloud, SPLIT)
    for n in range(40):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": f"n{n}"}])
    direct, bedrock = cloud.posts("/v1/messages"), cloud.posts("/model/")
    assert len(direct) + len(bedrock) == 40
    assert 10 <= len(direct) <= 35 and len(bedrock) >= 5  # 24/16 expected; wide bounds, no flakes
    assert all(r.headers["x-api-key"] == ANTHROPIC_KEY and r.json()["model"] == "claude-sonnet-4-6" for r in direct)
    assert all(r.path == f"/model/{SONNET_ON_BEDROCK}/invoke" and "model" not in r.json() for r in bedrock)
    assert all(r.headers["authorization"].startswith("AWS4-HMAC-SHA256") for r in bedrock)


def test_vertex_anthropic_with_a_self_signed_jwt(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = claude(cloud, VERTEX)
    message = client.messages.create(
        model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "hello vertex"}]
    )
    assert message.content[0].text == "echo: hello vertex"  # type: ignore[union-attr]
    with client.messages.stream(
        model="claude-haiku-4-5", max_tokens=32, messages=[{"role": "user", "content": "stream vertex"}]
    ) as stream:
        assert "".join(stream.text_stream) == "echo: stream vertex"
    counted = client.messages.count_tokens(model="claude-haiku-4-5", messages=[{"role": "user", "content": "n"}])
    assert counted.input_tokens > 0
    base = "/v1/projects/sluice-test/locations/us-east5/publishers/anthropic/models/"
    paths = [r.path for r in cloud.posts("/v1/projects/")]
    assert paths == [
        base + "claude-haiku-4-5@20251001:rawPredict",
        base + "claude-haiku-4-5@20251001:streamRawPredict",
        base + "count-tokens:rawPredict",
    ]
    assert cloud.posts("/v1/projects/")[2].json()["model"] == "claude-haiku-4-5@20251001"


def test_vertex_gemini_through_the_gemini_surface(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    c = genai.Client(api_key=VERTEX, http_options=types.HttpOptions(base_url=cloud.gateway.base_url))
    assert c.models.generate_content(model="gemini-2.5-flash", contents="hi gemini").text == "echo: hi gemini"
    pieces = [p.text or "" for p in c.models.generate_content_stream(model="gemini-2.5-flash", contents="stream g")]
    assert "".join(pieces) == "echo: stream g"
    base = "/v1/projects/sluice-test/locations/us-east5/publishers/google/models/gemini-2.5-flash"
    sent = cloud.posts("/v1/projects/")
    assert [(r.path, r.query) for r in sent] == [
        (base + ":generateContent", ""),
        (base + ":streamGenerateContent", "alt=sse"),
    ]


def test_vertex_gemini_from_the_anthropic_surface_is_translated(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = claude(cloud, VERTEX)
    answer = client.messages.create(
        model="gemini-2.5-flash", max_tokens=16, messages=[{"role": "user", "content": "claude caller"}]
    )
    assert answer.content[0].text == "echo: claude caller"  # type: ignore[union-attr]
    with client.messages.stream(
        model="gemini-2.5-flash", max_tokens=16, messages=[{"role": "user", "content": "streamed across"}]
    ) as stream:
        assert "".join(stream.text_stream) == "echo: streamed across"
    base = "/v1/projects/sluice-test/locations/us-east5/publishers/google/models/gemini-2.5-flash"
    sent = cloud.posts("/v1/projects/")
    assert [(r.path, r.query) for r in sent] == [
        (base + ":generateContent", ""),
        (base + ":streamGenerateContent", "alt=sse"),
    ]
    assert sent[0].json()["contents"][0]["parts"][0]["text"] == "claude caller"


def test_vertex_quota_error_is_a_rate_limit(cloud: CloudStack) -> None:
    with pytest.raises(anthropic.RateLimitError) as exhausted:
        claude(cloud, VERTEX).messages.create(
            model="claude-haiku-4-5-error-429", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert "RESOURCE_EXHAUSTED" in str(exhausted.value)


def test_azure_deployment_urls_and_api_key(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = openai.OpenAI(api_key=AZURE, base_url=cloud.gateway.base_url + "/v1", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi azure"}])
    assert answer.choices[0].message.content == "echo: hi azure"
    chunks = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream azure"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream azure"
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(vectors.data) == 2
    sent = cloud.posts("/openai/")
    assert [(r.path, r.query) for r in sent] == [
        ("/openai/deployments/chat-prod/chat/completions", "api-version=2024-10-21"),
        ("/openai/deployments/chat-prod/chat/completions", "api-version=2024-10-21"),
        ("/openai/deployments/embed-prod/embeddings", "api-version=2024-10-21"),
    ]
    assert all(r.headers["api-key"] == AZURE_KEY and "authorization" not in r.headers for r in sent)


def test_azure_v1_api_takes_the_deployment_as_model(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = openai.OpenAI(api_key=AZURE_V1, base_url=cloud.gateway.base_url + "/v1", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "v1"}])
    assert answer.choices[0].message.content == "echo: v1"
    (sent,) = cloud.posts("/openai/")
    assert (sent.path, sent.query, sent.json()["model"]) == ("/openai/v1/chat/completions", "", "chat-prod")
    with pytest.raises(openai.NotFoundError, match=r"does not exist"):
        client.chat.completions.create(model="gpt-unknown", messages=[{"role": "user", "content": "v1"}])


def test_azure_entra_token_goes_as_bearer(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = openai.OpenAI(api_key=AZURE_ENTRA, base_url=cloud.gateway.base_url + "/v1", max_retries=0)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "entra"}])
    assert answer.choices[0].message.content == "echo: entra"
    (sent,) = cloud.posts("/openai/")
    assert sent.headers["authorization"] == f"Bearer {ENTRA_TOKEN}" and "api-key" not in sent.headers


def test_azure_responses_url_forms() -> None:
    def url(api_version: str | None) -> str:
        cfg = ProviderConfig(type="azure", base_url="https://r.openai.azure.com/", api_version=api_version)
        provider = AzureProvider("azure", cfg, UpstreamClient(), Timeouts())
        call = ProviderCall(WireFormat.OPENAI_RESPONSES, Operation.GENERATE, "m", b"{}", {}, {}, "", False, None)
        return provider.url(call, "dep")

    assert url(None) == "https://r.openai.azure.com/openai/v1/responses"
    assert url("2025-04-01-preview") == "https://r.openai.azure.com/openai/responses?api-version=2025-04-01-preview"
