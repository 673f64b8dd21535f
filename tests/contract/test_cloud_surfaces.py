"""The /bedrock and /vertex inbound surfaces with the official `AnthropicBedrock` and
`AnthropicVertex` clients (what Claude Code's Bedrock and Vertex modes use): the virtual key as
the Bedrock API key or Vertex access token, answers in each service's framing, errors in
Bedrock's shape, and any provider of the key behind them."""

from __future__ import annotations

import anthropic
import httpx2
import orjson
import pytest
from anthropic import AnthropicBedrock, AnthropicVertex

from tests.contract.cloud_setup import ANTHROPIC_KEY, AWS, BEDROCK, DIRECT, OTHER_VENDORS, VERTEX, CloudStack, cloud
from tests.contract.conftest import log_entry

__all__ = ["cloud"]


def bedrock(stack: CloudStack, key: str) -> AnthropicBedrock:
    return AnthropicBedrock(
        api_key=key, base_url=stack.gateway.base_url + "/bedrock", aws_region="us-east-1", max_retries=0
    )


def vertex(stack: CloudStack, key: str) -> AnthropicVertex:
    return AnthropicVertex(
        access_token=key,
        region="us-east5",
        project_id="any-project",
        base_url=stack.gateway.base_url + "/vertex/v1",
        max_retries=0,
    )


def test_bedrock_surface_to_the_anthropic_api(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = bedrock(cloud, DIRECT)
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=32,
        messages=[{"role": "user", "content": "hi from bedrock mode"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    assert raw.parse().content[0].text == "echo: hi from bedrock mode"  # type: ignore[union-attr]
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=32, messages=[{"role": "user", "content": "stream it"}]
    ) as stream:
        assert "".join(stream.text_stream) == "echo: stream it"
        assert stream.response.headers["content-type"] == "application/vnd.amazon.eventstream"
        request_id = stream.response.headers["x-request-id"]
    first, second = cloud.posts("/v1/messages")
    assert first.headers["x-api-key"] == ANTHROPIC_KEY and DIRECT not in orjson.dumps(first.headers).decode()
    assert first.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    assert not any(h.startswith("x-sluice") for h in first.headers)
    body = first.json()
    assert body["model"] == "claude-sonnet-4-6" and body["stream"] is False
    assert "anthropic_version" not in body and "anthropic_beta" not in body
    assert second.json()["stream"] is True
    row = log_entry(cloud.gateway, request_id)
    assert row["provider"] == "anthropic" and row["output_tokens"] > 0 and row["stream"]


def test_bedrock_surface_to_bedrock_with_bedrock_model_ids(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    client = bedrock(cloud, BEDROCK)
    model = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    answer = client.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "round trip"}])
    assert answer.content[0].text == "echo: round trip"  # type: ignore[union-attr]
    with client.messages.stream(model=model, max_tokens=32, messages=[{"role": "user", "content": "frames"}]) as s:
        assert "".join(s.text_stream) == "echo: frames"
        final = s.get_final_message()
    assert final.usage.output_tokens > 0
    paths = [r.path for r in cloud.posts("/model/")]
    assert paths == [f"/model/{model}/invoke", f"/model/{model}/invoke-with-response-stream"]


def test_bedrock_surface_keeps_the_callers_choice_of_body_betas(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "anthropic_beta": ["interleaved-thinking-2025-05-14"],
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "betas"}],
    }
    headers = {"authorization": f"Bearer {BEDROCK}", "anthropic-beta": "claude-code-20250219"}
    url = cloud.gateway.base_url + "/bedrock/model/us.anthropic.claude-haiku-4-5-20251001-v1:0/invoke"
    assert httpx2.post(url, headers=headers, json=body).status_code == 200
    (sent,) = cloud.posts("/model/")
    assert sent.json()["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]  # the header's stays out
    assert not any(h.startswith("x-sluice") for h in sent.headers)


def test_bedrock_surface_accepts_sigv4_clients_with_the_key_in_x_api_key(cloud: CloudStack) -> None:
    client = AnthropicBedrock(
        aws_access_key="AKIDCALLER",
        aws_secret_key="caller-secret",
        aws_region="us-east-1",
        base_url=cloud.gateway.base_url + "/bedrock",
        default_headers={"x-api-key": DIRECT},
        max_retries=0,
    )
    answer = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "s"}]
    )
    assert answer.content[0].text == "echo: s"  # type: ignore[union-attr]


def test_bedrock_surface_errors_in_bedrocks_shape(cloud: CloudStack) -> None:
    client = bedrock(cloud, DIRECT)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client.messages.create(model="claude-opus-4-1", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    response = denied.value.response
    assert response.headers["x-amzn-errortype"].startswith("AccessDeniedException:")
    assert response.json() == {"message": response.json()["message"]}
    assert "Model 'claude-opus-4-1' is not allowed for virtual key 'vk-direct'" in response.json()["message"]
    with pytest.raises(anthropic.AuthenticationError):
        bedrock(cloud, "sk-sluice-not-a-key").messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    raw = httpx2.post(
        cloud.gateway.base_url + "/bedrock/model/claude-haiku-4-5-error-429/invoke",
        headers={"authorization": f"Bearer {BEDROCK}"},
        json={
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x"}],
        },
    )
    assert raw.status_code == 429 and raw.headers["x-amzn-errortype"].startswith("ThrottlingException:")
    assert "ThrottlingException" in raw.json()["message"]


def test_bedrock_surface_stream_exception_frame(cloud: CloudStack) -> None:
    client = bedrock(cloud, BEDROCK)
    with pytest.raises(anthropic.APIError) as broken:
        with client.messages.stream(
            model="claude-haiku-4-5-stream-exception", max_tokens=32, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            "".join(stream.text_stream)
    assert "Too many tokens" in str(broken.value)


def test_vertex_surface_to_the_anthropic_api_and_to_vertex(cloud: CloudStack) -> None:
    cloud.fake.upstream.reset()
    direct = vertex(cloud, DIRECT)
    model = "claude-haiku-4-5@20251001"
    answer = direct.messages.create(model=model, max_tokens=16, messages=[{"role": "user", "content": "vtx"}])
    assert answer.content[0].text == "echo: vtx"  # type: ignore[union-attr]
    with direct.messages.stream(model=model, max_tokens=16, messages=[{"role": "user", "content": "vs"}]) as s:
        assert "".join(s.text_stream) == "echo: vs"
    counted = direct.messages.count_tokens(model=model, messages=[{"role": "user", "content": "count"}])
    assert counted.input_tokens > 0
    sent = cloud.posts("/v1/messages")
    assert [r.json()["model"] for r in sent] == ["claude-haiku-4-5-20251001"] * 3
    assert all("anthropic_version" not in r.json() for r in sent)
    via_vertex = vertex(cloud, VERTEX)
    answer = via_vertex.messages.create(
        model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "vertex both ways"}]
    )
    assert answer.content[0].text == "echo: vertex both ways"  # type: ignore[union-attr]
    (upstream,) = cloud.posts("/v1/projects/")
    assert upstream.path.endswith("/publishers/anthropic/models/claude-haiku-4-5@20251001:rawPredict")
    assert upstream.json()["anthropic_version"] == "vertex-2023-10-16"


def test_bedrock_inference_profiles_listing(cloud: CloudStack) -> None:
    listed = httpx2.get(cloud.gateway.base_url + "/bedrock/inference-profiles?type=SYSTEM_DEFINED")
    assert listed.status_code == 200 and listed.json() == {"inferenceProfileSummaries": []}
    assert AWS.region == "us-east-1"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.5-flash"])
@pytest.mark.parametrize("surface", ["bedrock", "vertex"])
def test_cloud_surfaces_reach_other_vendors_translated(cloud: CloudStack, surface: str, model: str) -> None:
    """Claude Code in Bedrock or Vertex mode routed to an OpenAI or Gemini model: the request is
    translated for the provider, the answer comes back in the surface's own framing."""
    cloud.fake.upstream.reset()
    client = bedrock(cloud, OTHER_VENDORS) if surface == "bedrock" else vertex(cloud, OTHER_VENDORS)
    answer = client.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "cross"}])
    assert answer.content[0].text == "echo: cross"  # type: ignore[union-attr]
    with client.messages.stream(model=model, max_tokens=32, messages=[{"role": "user", "content": "cross it"}]) as s:
        assert "".join(s.text_stream) == "echo: cross it"
        final = s.get_final_message()
    assert final.usage.output_tokens > 0 and final.stop_reason == "end_turn"
    path = "/v1/chat/completions" if model.startswith("gpt") else f"/v1beta/models/{model}:"
    assert len(cloud.posts(path)) == 2  # the provider got its own format, twice
