"""Amazon Bedrock: Anthropic models through InvokeModel, every other model through Converse.

- InvokeModel (`/model/{id}/invoke`, `/invoke-with-response-stream`) takes the Anthropic Messages
  body without `model` and `stream`, plus `anthropic_version: bedrock-2023-05-31` (and betas as
  `anthropic_beta` in the body). Its stream is AWS event-stream framing whose `chunk` events
  carry the Anthropic events; they are re-emitted as Anthropic SSE, so for the engine this path
  speaks ANTHROPIC_MESSAGES and metering works unchanged.
- Converse (`/model/{id}/converse`, `/converse-stream`) takes BEDROCK_CONVERSE bodies
  (`formats/bedrock_converse.py`); callers of the Anthropic, OpenAI or Gemini APIs reach these
  models through the translation bridge (`sluice.translation`), their streams raw event-stream
  frames, metered by `ConverseStreamObserver`.

Authentication: SigV4 with the configured AWS credentials, or a Bedrock API key (`keys`, sent as
a bearer token). Callers name models as they would on Anthropic's API; `models` maps a name to
the Bedrock model id or inference profile (e.g. `us.anthropic.claude-sonnet-4-5-20250929-v1:0`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from urllib.parse import quote

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.formats.aws_eventstream import CONTENT_TYPE as EVENTSTREAM
from sluice.formats.aws_eventstream import InvokeStreamToSSE
from sluice.formats.json_body import encode_body
from sluice.providers.aws import SigV4Signer, bedrock_error
from sluice.providers.base import ProviderCall, ProviderError, ProviderKey, ProviderReply
from sluice.settings import ProviderConfig
from sluice.upstream.client import Timeouts, UpstreamClient

ANTHROPIC_VERSION = "bedrock-2023-05-31"
SIGV4_KEY = "aws-sigv4"  # the key name under which SigV4 credentials take part in key rotation
# Set by the /bedrock surface: the `anthropic_beta` list its caller put in the body (never sent on).
BODY_BETAS_HEADER = "x-sluice-bedrock-body-betas"
_WIRES = (WireFormat.ANTHROPIC_MESSAGES, WireFormat.BEDROCK_CONVERSE)
_PASSED_HEADERS = ("retry-after", "x-amzn-requestid")


# A Bedrock model id, inference profile id or ARN: `[region.]vendor.model...`.
_BEDROCK_ID = re.compile(
    r"^(?:arn:aws[\w-]*:bedrock:|(?:[a-z]{2,6}\.)?(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|qwen|"
    r"openai|writer|twelvelabs|stability|luma|moonshot|minimax|google|nvidia)\.)"
)


def is_anthropic(model_id: str) -> bool:
    """Bedrock ids (`anthropic.claude-...`, `us.anthropic.claude-...`), their ARNs, and bare names."""
    return "anthropic." in model_id or model_id.startswith("claude")


class BedrockProvider:
    type = "bedrock"
    model_in_url = True

    def __init__(self, name: str, cfg: ProviderConfig, client: UpstreamClient, timeouts: Timeouts) -> None:
        assert cfg.region is not None  # validated when the config loaded
        self.name = name
        self.timeouts = timeouts
        self.base_url = (cfg.base_url or f"https://bedrock-runtime.{cfg.region}.amazonaws.com").rstrip("/")
        self.models = dict(cfg.models)
        self._client = client
        self._extra_headers = dict(cfg.headers)
        self._signer: SigV4Signer | None = None
        self.keys = [ProviderKey(k.name, k.value.get_secret_value(), k.weight) for k in cfg.keys]
        if cfg.access_key_id is not None and cfg.secret_access_key is not None:
            token = cfg.session_token.get_secret_value() if cfg.session_token else None
            secret = cfg.secret_access_key.get_secret_value()
            self._signer = SigV4Signer(cfg.access_key_id.get_secret_value(), secret, token, cfg.region)
            if not self.keys:
                # Listed as a key so the engine's credential check, breakers and redaction cover it.
                self.keys = [ProviderKey(SIGV4_KEY, secret)]

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return wire in _WIRES and self.wire_for(model, operation) is wire

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        """The format this provider takes `model` in (for the engine's format bridge)."""
        if operation is not Operation.GENERATE:
            return None
        return WireFormat.ANTHROPIC_MESSAGES if is_anthropic(self.model_id(model)) else WireFormat.BEDROCK_CONVERSE

    def serves(self, model: str) -> bool:
        return model in self.models or model.startswith("claude") or _BEDROCK_ID.match(model) is not None

    def model_id(self, model: str) -> str:
        return self.models.get(model, model)

    async def send(self, call: ProviderCall) -> ProviderReply:
        model_id = self.model_id(call.model)
        if call.wire is WireFormat.ANTHROPIC_MESSAGES:
            if not is_anthropic(model_id):
                raise SluiceError(
                    ErrorKind.GATEWAY_UNSUPPORTED,
                    f"Bedrock model '{model_id}' is not an Anthropic model, so it takes the Converse API, "
                    "not the Anthropic Messages format.",
                )
            action = "invoke-with-response-stream" if call.stream else "invoke"
            body = invoke_body(call)
        else:
            action = "converse-stream" if call.stream else "converse"
            body = call.body
        # Escaped as AWS's SDKs do (botocore's percent_encode: `:` as %3A, an ARN's `/` as %2F);
        # the upstream client sends the URL as built, so the signature covers the bytes it carries.
        url = f"{self.base_url}/model/{quote(model_id, safe='')}/{action}"
        headers = {"content-type": "application/json", "accept": "application/json", **self._extra_headers}
        if call.key is not None and call.key.name != SIGV4_KEY:
            headers["authorization"] = f"Bearer {call.key.secret}"
        elif self._signer is not None:
            headers = self._signer.headers(url, body, headers)
        else:
            raise SluiceError(ErrorKind.GATEWAY_NOT_CONFIGURED, f"Provider '{self.name}' has no AWS credentials.")
        resp = await self._client.post(self.name, url, headers, body, self.timeouts)
        passed = {h: resp.headers[h] for h in _PASSED_HEADERS if h in resp.headers}
        if resp.status >= 400:  # AWS names the error in a header: keep it for `parse_error`
            errortype = {"x-amzn-errortype": resp.headers.get("x-amzn-errortype", "")}
            return ProviderReply(resp.status, "application/json", {**passed, **errortype}, body=await resp.read())
        if not call.stream:
            return ProviderReply(resp.status, "application/json", passed, body=await resp.read())
        if action == "converse-stream":
            return ProviderReply(resp.status, EVENTSTREAM, passed, chunks=resp.iter_chunks())
        return ProviderReply(resp.status, "text/event-stream", passed, chunks=_as_sse(resp.iter_chunks()))

    def parse_error(self, reply: ProviderReply, call: ProviderCall) -> ProviderError:
        # AWS's error bodies are in neither caller format: the gateway says them in its own words.
        return bedrock_error(self.name, reply.status, reply.headers, reply.body or b"")


def invoke_body(call: ProviderCall) -> bytes:
    doc = {k: v for k, v in call.doc.items() if k not in ("model", "stream")}
    doc.setdefault("anthropic_version", ANTHROPIC_VERSION)
    # A Bedrock-style caller chose which betas go in the body (Claude Code keeps some in the header
    # only): keep its choice. Otherwise the header's betas go in the body, as the SDKs do.
    beta = call.inbound_headers.get(BODY_BETAS_HEADER, call.inbound_headers.get("anthropic-beta"))
    if beta and "anthropic_beta" not in doc:
        doc["anthropic_beta"] = [b.strip() for b in beta.split(",") if b.strip()]
    return encode_body(doc)


async def _as_sse(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    translator = InvokeStreamToSSE()
    try:
        async for chunk in chunks:
            out = translator.feed(chunk)
            if out:
                yield out
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
