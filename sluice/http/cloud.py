"""Bedrock- and Vertex-style inference surfaces, so Claude Code (and the `AnthropicBedrock` /
`AnthropicVertex` SDK clients) in Bedrock or Vertex mode can use the gateway.

Both carry an Anthropic Messages body whose model (and, for Bedrock, streaming) is in the URL and
whose version is in an `anthropic_version` field. The surface turns it back into a plain Messages
request (model and stream in the body, betas in the `anthropic-beta` header), so any provider of
the key can serve it: the Anthropic API, Bedrock, Vertex (docs/providers.md).

- `POST /bedrock/model/{modelId}/invoke` and `/invoke-with-response-stream`: streams are answered
  in AWS event-stream framing, errors in Bedrock's shape (`x-amzn-errortype`, `{"message": ...}`).
- `POST /vertex/v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict` and
  `:streamRawPredict` (and `count-tokens:rawPredict`): answers as Anthropic's API gives them.

The virtual key travels as `Authorization: Bearer` (a Bedrock API key, AWS_BEARER_TOKEN_BEDROCK,
or ANTHROPIC_CUSTOM_HEADERS with the skip-auth settings) or `x-api-key`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from sluice.core.errors import SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.engine import Engine, Inbound, Outcome
from sluice.formats.aws_eventstream import CONTENT_TYPE as EVENTSTREAM
from sluice.formats.aws_eventstream import SSEToInvokeStream
from sluice.formats.json_body import encode_body
from sluice.http.asgi import Receive, Scope, Send, respond
from sluice.http.errors import bedrock_error, bedrock_error_of_anthropic, bedrock_stream_error, error_headers
from sluice.http.inference import InferenceRoute, parse_json
from sluice.providers.bedrock import BODY_BETAS_HEADER

BEDROCK_PATH = re.compile(r"^/bedrock/model/([^/]+)/(invoke|invoke-with-response-stream)$")
VERTEX_PATH = re.compile(
    r"^/vertex/v1(?:beta1)?/projects/[^/]+/locations/[^/]+/publishers/anthropic/models/([^/:]+):"
    r"(rawPredict|streamRawPredict)$"
)
# us.anthropic.claude-sonnet-4-5-20250929-v1:0, an ARN's last part, or a plain name.
_BEDROCK_ID = re.compile(
    r"^(?:arn:[^/]+/)?(?:(?:us|eu|apac|global|us-gov|jp|au|ca)\.)?(?:anthropic\.)?(.+?)(?:-v\d+(?::\d+)?)?$"
)


def anthropic_name_of_bedrock(model_id: str) -> str:
    """The Anthropic API's name for a Bedrock model id: what allowlists and prices know."""
    match = _BEDROCK_ID.match(model_id)
    return match.group(1) if match else model_id


def anthropic_name_of_vertex(model: str) -> str:
    """`claude-sonnet-4-5@20250929` -> `claude-sonnet-4-5-20250929`."""
    return model.replace("@", "-")


def _messages_request(
    doc: dict[str, Any], headers: dict[str, str], model: object, stream: bool | None
) -> tuple[bytes, dict[str, Any], dict[str, str]]:
    doc.pop("anthropic_version", None)
    betas = doc.pop("anthropic_beta", None)
    headers = {k: v for k, v in headers.items() if k != BODY_BETAS_HEADER}
    if isinstance(betas, list) and betas:
        given = [b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()]
        headers["anthropic-beta"] = ",".join(dict.fromkeys([*given, *map(str, betas)]))
        headers[BODY_BETAS_HEADER] = ",".join(map(str, betas))
    doc["model"] = model
    if stream is not None:
        doc["stream"] = stream
    return encode_body(doc), doc, headers


class BedrockRoute(InferenceRoute):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE)

    def inbound(self, scope: Scope, headers: dict[str, str], body: bytes) -> Inbound:
        match = BEDROCK_PATH.match(scope["path"])
        assert match is not None  # the router sends only matching paths here
        stream = match.group(2) == "invoke-with-response-stream"
        model = anthropic_name_of_bedrock(match.group(1))
        raw, doc, headers = _messages_request(parse_json(body), headers, model, stream)
        return Inbound(self.wire, self.operation, raw, doc, headers)

    def answer(self, outcome: Outcome) -> Outcome:
        if outcome.failure is not None:  # a translated provider error
            status, body, headers = bedrock_error(outcome.failure.status, outcome.failure.message)
            return Outcome(status, "application/json", {**outcome.headers, **headers}, body=body)
        if outcome.status >= 400 and outcome.body is not None:
            status, body, headers = bedrock_error_of_anthropic(outcome.status, outcome.body)
            return Outcome(status, "application/json", {**outcome.headers, **headers}, body=body)
        if outcome.chunks is None:
            return outcome
        headers = {**outcome.headers, "x-amzn-bedrock-content-type": "application/json"}
        return Outcome(outcome.status, EVENTSTREAM, headers, chunks=_framed(outcome.chunks))

    def stream_error(self, err: SluiceError) -> bytes:
        return bedrock_stream_error(err)

    def error_response(self, err: SluiceError, status: int, request_id: str) -> tuple[int, bytes, dict[str, str]]:
        status, body, headers = bedrock_error(status, err.message)
        return status, body, {**error_headers(err, self.wire), **headers, "x-amzn-requestid": request_id}


async def _framed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    reframe = SSEToInvokeStream()
    try:
        async for chunk in chunks:
            out = reframe.feed(chunk)
            if out:
                yield out
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


class VertexRoute(InferenceRoute):
    def __init__(self, engine: Engine, operation: Operation) -> None:
        super().__init__(engine, WireFormat.ANTHROPIC_MESSAGES, operation)

    def inbound(self, scope: Scope, headers: dict[str, str], body: bytes) -> Inbound:
        match = VERTEX_PATH.match(scope["path"])
        assert match is not None  # the router sends only matching paths here
        doc = parse_json(body)
        if self.operation is Operation.COUNT_TOKENS:  # the model is in the body there
            model = doc.get("model")  # anything but a string is refused by the engine
            model = anthropic_name_of_vertex(model) if isinstance(model, str) else model
            raw, doc, headers = _messages_request(doc, headers, model, None)
            doc.pop("stream", None)
            return Inbound(self.wire, self.operation, encode_body(doc), doc, headers)
        stream = match.group(2) == "streamRawPredict"
        raw, doc, headers = _messages_request(doc, headers, anthropic_name_of_vertex(match.group(1)), stream)
        return Inbound(self.wire, self.operation, raw, doc, headers)


class CloudRoutes:
    """Matches the cloud-style paths the dictionary router cannot hold."""

    def __init__(self, engine: Engine) -> None:
        self.bedrock = BedrockRoute(engine)
        self.vertex = VertexRoute(engine, Operation.GENERATE)
        self.vertex_count = VertexRoute(engine, Operation.COUNT_TOKENS)

    def match(self, path: str) -> InferenceRoute | None:
        if path.startswith("/bedrock/") and BEDROCK_PATH.match(path):
            return self.bedrock
        if path.startswith("/vertex/"):
            found = VERTEX_PATH.match(path)
            if found:
                return self.vertex_count if found.group(1) == "count-tokens" else self.vertex
        return None


async def inference_profiles(scope: Scope, receive: Receive, send: Send) -> None:
    """Claude Code in Bedrock mode lists the account's inference profiles first; the gateway has
    none of its own (models are named as the caller likes and mapped per provider)."""
    await respond(send, 200, b'{"inferenceProfileSummaries":[]}', "application/json", {})
