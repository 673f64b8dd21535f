"""Google Vertex AI: Anthropic models through rawPredict, Gemini models through generateContent.

- `{base}/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{model}:rawPredict`
  (`:streamRawPredict` when streaming) takes the Messages body without `model`, with
  `anthropic_version: vertex-2023-10-16`, and answers exactly as Anthropic's API does (JSON or
  SSE), so metering is unchanged. Token counting: `.../models/count-tokens:rawPredict`.
- `.../publishers/google/models/{model}:generateContent` (`:streamGenerateContent?alt=sse`,
  `:countTokens`) takes Gemini bodies and answers as the Gemini API does.

Authentication: a service account's self-signed JWT (`google_auth.py`), no token exchange.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import orjson

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.formats.json_body import encode_body
from sluice.providers.base import ProviderCall, ProviderError, ProviderKey, ProviderReply, error_by_status
from sluice.providers.google_auth import CredentialsError, SelfSignedJWT, ServiceAccount
from sluice.settings import ProviderConfig
from sluice.upstream.client import Timeouts, UpstreamClient

log = logging.getLogger("sluice.providers.vertex")
ANTHROPIC_VERSION = "vertex-2023-10-16"
_SPOKEN = {
    (WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE),
    (WireFormat.ANTHROPIC_MESSAGES, Operation.COUNT_TOKENS),
    (WireFormat.GEMINI, Operation.GENERATE),
    (WireFormat.GEMINI, Operation.COUNT_TOKENS),
}
_PASSED_HEADERS = ("retry-after",)
# Google's error statuses by what the gateway makes of them, for callers of the Anthropic format.
_GOOGLE_KINDS = {
    400: ErrorKind.CALLER_BAD_REQUEST,
    404: ErrorKind.GATEWAY_NOT_CONFIGURED,
    429: ErrorKind.PROVIDER_RATE_LIMITED,
    503: ErrorKind.PROVIDER_OVERLOADED,
    504: ErrorKind.PROVIDER_TIMEOUT,
}


def default_base_url(region: str) -> str:
    if region == "global":
        return "https://aiplatform.googleapis.com"
    if region in ("us", "eu"):
        return f"https://aiplatform.{region}.rep.googleapis.com"
    return f"https://{region}-aiplatform.googleapis.com"


class VertexProvider:
    type = "vertex"
    model_in_url = True

    def __init__(self, name: str, cfg: ProviderConfig, client: UpstreamClient, timeouts: Timeouts) -> None:
        assert cfg.region is not None  # validated when the config loaded
        self.name = name
        self.timeouts = timeouts
        self.region = cfg.region
        self.base_url = (cfg.base_url or default_base_url(cfg.region)).rstrip("/")
        self.models = dict(cfg.models)
        self.project = cfg.project
        self.keys: list[ProviderKey] = []
        self._client = client
        self._extra_headers = dict(cfg.headers)
        self._jwt: SelfSignedJWT | None = None
        if cfg.credentials is not None:
            try:
                account = ServiceAccount.load(cfg.credentials.get_secret_value())
            except CredentialsError as exc:
                log.error("provider %s: %s; it answers 503 until fixed", name, exc)
            else:
                self._jwt = SelfSignedJWT(account)
                self.project = self.project or account.project_id
                # Listed as a key so the engine's credential check and breakers cover it.
                self.keys = [ProviderKey(account.client_email, account.private_key_id)]

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return self.wire_for(model, operation) is wire

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        """The format this provider takes `model` in (for the engine's format bridge)."""
        wire = WireFormat.ANTHROPIC_MESSAGES if self.model_id(model).startswith("claude") else WireFormat.GEMINI
        return wire if (wire, operation) in _SPOKEN else None

    def serves(self, model: str) -> bool:
        return model in self.models or model.startswith(("claude", "gemini", "gemma"))

    def model_id(self, model: str) -> str:
        return self.models.get(model, model)

    def _url(self, publisher: str, model: str, method: str, query: str = "") -> str:
        path = (
            f"/v1/projects/{quote(self.project or '', safe='')}/locations/{quote(self.region, safe='')}"
            f"/publishers/{publisher}/models/"
            f"{quote(model, safe='@')}:{method}"
        )
        return self.base_url + path + (f"?{query}" if query else "")

    async def send(self, call: ProviderCall) -> ProviderReply:
        if self._jwt is None or not self.project:
            raise SluiceError(
                ErrorKind.GATEWAY_NOT_CONFIGURED,
                f"Provider '{self.name}' has no usable service-account credentials or project.",
            )
        model = self.model_id(call.model)
        headers = {"content-type": "application/json", **self._extra_headers}
        if call.wire is WireFormat.ANTHROPIC_MESSAGES:
            if call.operation is Operation.COUNT_TOKENS:
                url = self._url("anthropic", "count-tokens", "rawPredict")
                body = encode_body({**call.doc, "model": model})
            else:
                url = self._url("anthropic", model, "streamRawPredict" if call.stream else "rawPredict")
                doc = {k: v for k, v in call.doc.items() if k != "model"}
                doc.setdefault("anthropic_version", ANTHROPIC_VERSION)
                body = encode_body(doc)
            for name in ("anthropic-beta",):
                if call.inbound_headers.get(name):
                    headers[name] = call.inbound_headers[name]
        elif call.operation is Operation.COUNT_TOKENS:
            url, body = self._url("google", model, "countTokens"), call.body
        elif call.stream:
            url, body = self._url("google", model, "streamGenerateContent", "alt=sse"), call.body
        else:
            url, body = self._url("google", model, "generateContent"), call.body
        headers["authorization"] = f"Bearer {self._jwt.token()}"
        resp = await self._client.post(self.name, url, headers, body, self.timeouts)
        passed = {h: resp.headers[h] for h in _PASSED_HEADERS if h in resp.headers}
        content_type = resp.headers.get("content-type", "application/json")
        if call.stream and resp.status < 400:
            return ProviderReply(resp.status, content_type, passed, chunks=resp.iter_chunks())
        return ProviderReply(resp.status, content_type, passed, body=await resp.read())

    def parse_error(self, reply: ProviderReply, call: ProviderCall) -> ProviderError:
        # Claude on Vertex answers Anthropic's errors, but Google's front end answers its own,
        # which a caller of the Anthropic format cannot read: the gateway says those in its words.
        if call.wire is WireFormat.ANTHROPIC_MESSAGES and _is_google_error(reply.body or b""):
            return _google_error(self.name, reply.status, reply.body or b"")
        return error_by_status(self.name, reply, call.key, self.keys)


def _is_google_error(body: bytes) -> bool:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if isinstance(doc, list) and doc:  # streamRawPredict may wrap the error in a list
        doc = doc[0]
    return isinstance(doc, dict) and isinstance(doc.get("error"), dict) and "code" in doc["error"]


def _google_error(provider: str, status: int, body: bytes) -> ProviderError:
    doc = orjson.loads(body)
    error = (doc[0] if isinstance(doc, list) else doc)["error"]
    kind = _GOOGLE_KINDS.get(status) or (ErrorKind.PROVIDER_AUTH if status in (401, 403) else ErrorKind.PROVIDER_ERROR)
    message = f"Provider '{provider}' (Vertex AI) answered {error.get('status', status)}: {error.get('message', '')}"
    return ProviderError(kind, message, status, retry_after=1.0 if status == 429 else None)
