"""Redacted secrets come back in Bedrock's event streams too: a Claude Code request (Anthropic
Messages) to a Converse model is redacted before Bedrock sees it, and the `toolUse` input that
ConverseStream sends back in fragments (Bedrock's ContentBlockDeltaEvent carries `delta.toolUse.input`
as a string piece of the JSON input) is restored across any split, inside re-encoded, checksummed
frames the strict fake's own frame encoder would produce."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import orjson
import pytest
from aiohttp import web

from sluice.guardrails.vault import Vault
from tests.fakes import aws_wire, cloud, rules_converse
from tests.fakes.aws_wire import AwsAccount
from tests.fakes.cloud import CloudFakeThread, CloudSettings
from tests.support import GatewayThread

KEY = "sk-sluice-guard-bedrock-0000000"
PLACEHOLDER_KEY = "bedrock-guard-key"
SESSION = "sess-bedrock-1"
AWS = AwsAccount("AKIAE2EGUARDEXAMPLE0", "guard/bedrock/KEY/0123456789abcdefEXAMPLE", None, "us-west-2")
NOVA = "amazon.nova-pro-v1:0"  # not an Anthropic model: Bedrock takes it through the Converse API
AKID = "AKIAQWERTYUIOPASDFGH"
SECRET = "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"
ENV = f"AWS_ACCESS_KEY_ID={AKID}\nAWS_SECRET_ACCESS_KEY={SECRET}\n"
WRITE = {
    "name": "Write",
    "description": "Write a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["file_path", "content"],
    },
}


def _placeholder(kind: str, value: str) -> str:
    return Vault(PLACEHOLDER_KEY.encode(), f"vk-bedrock\0{SESSION}", {}).placeholder(kind, value)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayThread, CloudFakeThread]]:
    with CloudFakeThread(CloudSettings(aws=AWS)) as fake:
        provider = {"base_url": fake.base_url, "region": AWS.region}
        provider |= {"access_key_id": AWS.access_key_id, "secret_access_key": AWS.secret_access_key}
        config = {
            "providers": {"bedrock": provider},
            "virtual_keys": [{"id": "vk-bedrock", "value": KEY, "provider_configs": [{"provider": "bedrock"}]}],
            "guardrails": {"placeholder_key": PLACEHOLDER_KEY},
        }
        with GatewayThread(config, tmp_path_factory.mktemp("guard-bedrock")) as gateway:
            yield gateway, fake


def _fragmented_tool_use(fake: cloud.CloudFake, args: dict[str, Any], size: int) -> Any:
    """ConverseStream answering with one toolUse whose input arrives `size` characters at a time."""

    async def converse(request: web.Request, doc: dict[str, Any], stream: bool) -> web.StreamResponse:
        refused = rules_converse.check(doc)  # the strict fake's own refusals first
        assert refused is None, refused
        assert stream
        use = {"toolUseId": "tooluse_" + uuid.uuid4().hex[:22], "name": "Write"}
        text = json.dumps(args)
        frames = [
            aws_wire.event("messageStart", {"role": "assistant"}),
            aws_wire.event("contentBlockStart", {"start": {"toolUse": use}, "contentBlockIndex": 0}),
            *(
                aws_wire.event(
                    "contentBlockDelta", {"delta": {"toolUse": {"input": text[i : i + size]}}, "contentBlockIndex": 0}
                )
                for i in range(0, len(text), size)
            ),
            aws_wire.event("contentBlockStop", {"contentBlockIndex": 0}),
            aws_wire.event("messageStop", {"stopReason": "tool_use"}),
            aws_wire.event(
                "metadata",
                {"usage": {"inputTokens": 9, "outputTokens": 9, "totalTokens": 18}, "metrics": {"latencyMs": 4}},
            ),
        ]
        return await cloud._send_frames(request, frames)

    return converse


@pytest.mark.parametrize("size", [1, 5, 8, 13, 64])
def test_converse_stream_tool_use_gets_the_real_value(stack: tuple[GatewayThread, CloudFakeThread], size: int) -> None:
    gateway, fake = stack
    akid, secret = _placeholder("aws_access_key_id", AKID), _placeholder("aws_secret_key", SECRET)
    content = f"AWS_ACCESS_KEY_ID={akid}\nAWS_SECRET_ACCESS_KEY={secret}\n"
    plain = fake.upstream._converse
    fake.upstream._converse = _fragmented_tool_use(fake.upstream, {"file_path": "backup.env", "content": content}, size)  # type: ignore[method-assign]
    before = len(fake.requests)
    try:
        client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
        with client.messages.stream(
            model=NOVA,
            max_tokens=200,
            tools=[WRITE],  # type: ignore[list-item]
            messages=[{"role": "user", "content": f"Here is my .env:\n{ENV}\nwrite it to backup.env"}],
            extra_headers={"X-Claude-Code-Session-Id": SESSION},
        ) as s:
            message = s.get_final_message()
    finally:
        fake.upstream._converse = plain  # type: ignore[method-assign]
    sent = [r.body for r in fake.requests[before:]]
    assert sent and all(AKID.encode() not in b and SECRET.encode() not in b for b in sent)
    assert _placeholder("aws_secret_key", SECRET).encode() in sent[-1]
    [tool_use] = [b for b in message.content if b.type == "tool_use"]
    assert tool_use.input == {"file_path": "backup.env", "content": ENV}  # type: ignore[union-attr]
    assert orjson.dumps(tool_use.input).count(b"[sluice:") == 0  # type: ignore[union-attr]
