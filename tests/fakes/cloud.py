"""Fake cloud upstreams on one server, speaking the exact wire formats and checking credentials
the way the real services do; answers reuse the fake Anthropic/OpenAI renderers of `upstream.py`.

- Bedrock (`/model/{id}/invoke`, `/invoke-with-response-stream`, `/converse`, `/converse-stream`):
  SigV4 recomputed with botocore (`aws_wire.verify_sigv4`) or a Bedrock API key (bearer); InvokeModel
  bodies must carry `anthropic_version: bedrock-2023-05-31` and neither `model` nor `stream`;
  streams are AWS event-stream frames (`aws_wire.frame`), cut at odd places.
- Vertex (`/v1/projects/{p}/locations/{l}/publishers/{anthropic|google}/models/{m}:{method}`): the
  bearer token must be the service account's self-signed JWT, verified with its public key (PyJWT).
- Azure OpenAI (`/openai/deployments/{d}/...?api-version=`, `/openai/v1/...`): `api-key` header,
  known deployments, the api-version configured.
Model names script failures as in `upstream.py`: `error-429` (ThrottlingException / RESOURCE_EXHAUSTED),
`stream-exception` (Bedrock: an exception frame after a few events).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import aws_wire, rules_anthropic, rules_converse, rules_gemini
from tests.fakes.upstream import FakeUpstream, FakeUpstreamThread, RecordedRequest
from tests.fakes.wire_kit import echo_text, parse_sse

BEDROCK = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream|converse|converse-stream)$")
VERTEX = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/(anthropic|google)/models/([^/:]+):(\w+)$")
AZURE_DEPLOYMENT = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")
AZURE_V1 = re.compile(r"^/openai/v1/(chat/completions|embeddings|responses)$")
VERTEX_AUDIENCE = "https://aiplatform.googleapis.com/"


@dataclass
class ServiceAccountKey:
    info: dict[str, str]  # the JSON a Google service-account key file holds
    public_key: rsa.RSAPublicKey


def make_service_account(project: str = "sluice-test") -> ServiceAccountKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem.decode(),
        "client_email": f"sluice@{project}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return ServiceAccountKey(info, key.public_key())


@dataclass
class CloudSettings:
    aws: aws_wire.AwsAccount | None = None
    bedrock_api_keys: set[str] = field(default_factory=set)
    vertex: ServiceAccountKey | None = None
    vertex_location: str = "us-east5"
    azure_key: str = ""
    azure_entra_token: str = ""  # accepted as `Authorization: Bearer`, as Azure takes Entra ID tokens
    azure_api_version: str = "2024-10-21"
    azure_deployments: set[str] = field(default_factory=set)


class CloudFake(FakeUpstream):
    def __init__(self, settings: CloudSettings) -> None:
        super().__init__()
        self.cloud = settings

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if BEDROCK.match(path) or VERTEX.match(path) or path.startswith("/openai/"):
            body = await request.read()
            headers = {k.lower(): v for k, v in request.headers.items()}
            with self._lock:
                raw_path = request.raw_path.partition("?")[0]
                self.requests.append(
                    RecordedRequest(request.method, path, request.query_string, headers, body, raw_path)
                )
            if path.startswith("/model/"):
                return await self._bedrock(request, headers, body)
            if path.startswith("/v1/projects/"):
                return await self._vertex(request, headers, body)
            return await self._azure(request, headers, body)
        return await super()._dispatch(request)

    # -- Bedrock -------------------------------------------------------------------------------------------------

    def _bedrock_auth(self, request: web.Request, headers: dict[str, str], body: bytes) -> web.Response | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme == "Bearer":
            if token in self.cloud.bedrock_api_keys:
                return None
            return _amzn(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        if self.cloud.aws is None:
            return _amzn(403, "AccessDeniedException", "SigV4 is not accepted here.")
        url = f"http://{headers['host']}{request.raw_path}"
        why = aws_wire.verify_sigv4(self.cloud.aws, request.method, url, headers, body)
        return None if why is None else _amzn(403, "InvalidSignatureException", why)

    async def _bedrock(self, request: web.Request, headers: dict[str, str], body: bytes) -> web.StreamResponse:
        denied = self._bedrock_auth(request, headers, body)
        if denied is not None:
            return denied
        match = BEDROCK.match(request.path)
        assert match is not None
        model, action = match.group(1), match.group(2)
        if "error-429" in model:
            return _amzn(429, "ThrottlingException", "Too many requests, please wait before trying again.")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _amzn(
                400, "ValidationException", "Malformed input request, please reformat your input and try again."
            )
        if action.startswith("converse"):
            return await self._converse(request, doc, action == "converse-stream")
        if "anthropic." not in model:
            return _amzn(400, "ValidationException", f"The model {model} does not support InvokeModel with this body.")
        wrong = {"model", "stream"} & set(doc)
        if doc.get("anthropic_version") != "bedrock-2023-05-31" or wrong:
            why = f"extraneous key [{sorted(wrong)[0]}] is not permitted" if wrong else "anthropic_version is required"
            return _amzn(400, "ValidationException", f"Malformed input request: #: {why}, please reformat your input")
        refused = rules_anthropic.check(doc, model)
        if refused is not None:
            # Bedrock passes the model's refusal on as a ValidationException: "The model returned the following
            # errors: `temperature` and `top_p` cannot both be specified ..." (skydiscover-ai/skydiscover#15,
            # anomalyco/opencode#3077).
            return _amzn(400, "ValidationException", f"The model returned the following errors: {refused.message}")
        reply = self.anthropic_reply(doc, body, model)
        if action == "invoke":
            return web.Response(body=self.anthropic.render_message(reply), headers=_amzn_ok("application/json"))
        frames = []
        for n, (_, data) in enumerate(parse_sse(b"".join(self.anthropic.render_stream(reply)))):
            event = orjson.loads(data)
            if event.get("type") == "message_stop":
                event["amazon-bedrock-invocationMetrics"] = {
                    "inputTokenCount": reply.input_tokens,
                    "outputTokenCount": reply.output_tokens,
                    "invocationLatency": 42,
                    "firstByteLatency": 21,
                }
            frames.append(aws_wire.chunk(orjson.dumps(event), n))
        if "stream-exception" in model:
            frames = [*frames[:3], aws_wire.exception("throttlingException", "Too many tokens, please wait.")]
        return await _send_frames(request, frames)

    async def _converse(self, request: web.Request, doc: dict[str, Any], stream: bool) -> web.StreamResponse:
        refused = rules_converse.check(doc)
        if refused is not None:
            return _amzn(400, "ValidationException", refused.message)
        messages = [
            {"role": m["role"], "content": [{"type": "text", "text": b["text"]} for b in m["content"] if "text" in b]}
            for m in doc.get("messages") or []
        ]
        text = echo_text(messages)
        usage = {"inputTokens": 12, "outputTokens": max(1, len(text) // 4)}
        usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
        if not stream:
            answer = {
                "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                "stopReason": "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 42},
            }
            return web.Response(body=orjson.dumps(answer), headers=_amzn_ok("application/json"))
        frames = [aws_wire.event("messageStart", {"role": "assistant"})]
        frames += [
            aws_wire.event("contentBlockDelta", {"delta": {"text": piece}, "contentBlockIndex": 0})
            for piece in (text[: len(text) // 2], text[len(text) // 2 :])
        ]
        frames.append(aws_wire.event("contentBlockStop", {"contentBlockIndex": 0}))
        frames.append(aws_wire.event("messageStop", {"stopReason": "end_turn"}))
        frames.append(aws_wire.event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}))
        return await _send_frames(request, frames)

    # -- Vertex --------------------------------------------------------------------------------------------------

    def _vertex_auth(self, headers: dict[str, str], project: str, location: str) -> web.Response | None:
        account = self.cloud.vertex
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if account is None or scheme != "Bearer":
            return _google(401, "UNAUTHENTICATED", "Request is missing required authentication credential.")
        email = account.info["client_email"]
        try:
            claims = jwt.decode(token, account.public_key, algorithms=["RS256"], audience=VERTEX_AUDIENCE, issuer=email)
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            return _google(401, "UNAUTHENTICATED", f"Request had invalid authentication credentials: {exc}")
        if claims.get("sub") != email or kid != account.info["private_key_id"] or claims["exp"] - claims["iat"] > 3600:
            return _google(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if project != account.info["project_id"] or location != self.cloud.vertex_location:
            return _google(403, "PERMISSION_DENIED", f"Permission denied on resource project {project}.")
        return None

    async def _vertex(self, request: web.Request, headers: dict[str, str], body: bytes) -> web.StreamResponse:
        match = VERTEX.match(request.path)
        assert match is not None
        project, location, publisher, model, method = match.groups()
        denied = self._vertex_auth(headers, project, location)
        if denied is not None:
            return denied
        if "error-429" in model:
            return _google(429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com.")
        doc = orjson.loads(body)
        if publisher == "google":
            return await self._gemini(request, doc, model, method)
        if model == "count-tokens" and method == "rawPredict":
            return web.json_response({"input_tokens": max(1, len(body) // 4)})
        if doc.get("anthropic_version") != "vertex-2023-10-16" or "model" in doc:
            return self._bad_request("anthropic", "anthropic_version: vertex-2023-10-16 is required; model is not")
        refused = rules_anthropic.check(doc, model)
        if refused is not None:
            # Vertex answers with Claude's own error body ("req_vrtx_..." request ids, Kilo-Org/kilocode#5219).
            return self.refuse("anthropic", refused)
        reply = self.anthropic_reply(doc, body, model)
        if method == "streamRawPredict" and doc.get("stream") is True:
            return await self._send_events(request, "anthropic", self.anthropic.render_stream(reply), model, b"")
        return web.Response(body=self.anthropic.render_message(reply), content_type="application/json")

    async def _gemini(self, request: web.Request, doc: dict[str, Any], model: str, method: str) -> web.StreamResponse:
        if method == "countTokens":
            return web.json_response({"totalTokens": 7})
        refused = rules_gemini.check(doc, model)
        if refused is not None:
            return _google(400, "INVALID_ARGUMENT", refused.message)
        messages = [
            {"role": c.get("role"), "content": [{"type": "text", "text": p["text"]} for p in c["parts"] if "text" in p]}
            for c in doc.get("contents") or []
        ]
        text = echo_text(messages)
        usage = {"promptTokenCount": 9, "candidatesTokenCount": max(1, len(text) // 4)}
        usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]

        def piece(t: str, last: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": t}]}, "index": 0}
            if last:
                candidate["finishReason"] = "STOP"
            return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "vtx-1"}

        if method == "generateContent":
            return web.json_response(piece(text, True))
        if method != "streamGenerateContent" or request.query.get("alt") != "sse":
            return _google(400, "INVALID_ARGUMENT", f"unexpected method {method}")
        halves = (text[: len(text) // 2], text[len(text) // 2 :])
        events = [b"data: " + orjson.dumps(piece(t, i == 1)) + b"\r\n\r\n" for i, t in enumerate(halves)]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    # -- Azure ---------------------------------------------------------------------------------------------------

    async def _azure(self, request: web.Request, headers: dict[str, str], body: bytes) -> web.StreamResponse:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        bearer = token if scheme == "Bearer" and token == self.cloud.azure_entra_token else None
        if headers.get("api-key") != self.cloud.azure_key and bearer is None:
            message = "Access denied due to invalid subscription key or wrong API endpoint."
            return web.json_response({"error": {"code": "401", "message": message}}, status=401)
        doc = orjson.loads(body)
        deployed = AZURE_DEPLOYMENT.match(request.path)
        if deployed:
            deployment, kind = deployed.groups()
            if request.query.get("api-version") != self.cloud.azure_api_version:
                return _azure_error(404, "404", "Resource not found")
        elif AZURE_V1.match(request.path) and "api-version" not in request.query:
            deployment, kind = str(doc.get("model")), AZURE_V1.match(request.path).group(1)  # type: ignore[union-attr]
        else:
            return _azure_error(404, "404", "Resource not found")
        if deployment not in self.cloud.azure_deployments:
            message = "The API deployment for this resource does not exist."
            return _azure_error(404, "DeploymentNotFound", message)
        if kind == "embeddings":
            return self._embeddings(doc, deployment)
        return await self._chat(request, body, doc, deployment)


def _amzn_ok(content_type: str) -> dict[str, str]:
    return {"Content-Type": content_type, "x-amzn-RequestId": "2f9a0c1e-0000-4000-8000-" + str(time.time_ns())[-12:]}


def _amzn(status: int, name: str, message: str) -> web.Response:
    headers = {**_amzn_ok("application/json"), **aws_wire.error_headers(name)}
    return web.Response(status=status, body=orjson.dumps({"message": message}), headers=headers)


def _google(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message, "status": code}}, status=status)


def _azure_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def _send_frames(request: web.Request, frames: list[bytes]) -> web.StreamResponse:
    headers = _amzn_ok("application/vnd.amazon.eventstream")
    headers["X-Amzn-Bedrock-Content-Type"] = "application/json"
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    # Cut the byte stream at places unrelated to frame boundaries, as TCP may.
    data = b"".join(frames)
    step = 37
    for start in range(0, len(data), step):
        await response.write(data[start : start + step])
    await response.write_eof()
    return response


class CloudFakeThread(FakeUpstreamThread):
    def __init__(self, settings: CloudSettings) -> None:
        super().__init__()
        self.upstream = CloudFake(settings)
