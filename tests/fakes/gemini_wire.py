"""The Gemini API (``/v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``, ``:countTokens``)
for the fake upstream.

Answers are rendered from byte templates built from ``tests/fixtures/gemini`` (written after Google's API reference and
google-genai's types): pretty-printed JSON bodies (indent 2); streamed chunks as ``data: {...}`` blocks ending in
CRLF CRLF, their JSON with ``": "`` after keys and no space after commas, as Google's front end writes them; every
chunk repeats the cumulative ``usageMetadata``; the last one has ``finishReason``. A function call is one chunk whose
part is ``functionCall`` (``args`` an object, never text); its ``finishReason`` is ``STOP``, as Gemini says it.

Behaviour: the model comes from the URL; the key from ``x-goog-api-key`` (or ``?key=``): none is a 403
PERMISSION_DENIED, one outside ``valid_keys`` a 400 API_KEY_INVALID, as Google answers. A function is called when
the request has ``functionDeclarations`` and ``toolConfig.functionCallingConfig.mode`` is ``ANY`` or the last user
text says "use a tool". Model names script failures as in ``tests.fakes.upstream`` (``error-429``,
``error-500``, ``error-529`` -> 503 UNAVAILABLE, ``slow``, ``stream-abort``, ``stream-error``).
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes import rules_gemini
from tests.fakes.rules_kit import Refusal, sign
from tests.fakes.upstream import _drop_connection
from tests.fakes.wire_kit import (
    FIXTURES,
    TOOL_TRIGGER,
    Template,
    ToolUse,
    _marked,
    _rand,
    chunk_words,
    echo_text,
    jint,
    jstr,
    last_user_text,
    nested_pretty,
    tool_input_for,
)

if TYPE_CHECKING:
    from tests.fakes.upstream import FakeUpstream

GEMINI_PATH = re.compile(r"^/v1(?:beta)?/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$")


def google_json(obj: Any) -> bytes:
    """Streamed chunks: ``": "`` after keys, ``","`` between members."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ": ")).encode()


def pretty(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode()


def sse(data: bytes) -> bytes:
    return b"data: " + data + b"\r\n\r\n"


@dataclass
class GeminiReply:
    model: str
    id: str
    text_chunks: list[str] | None
    tool: ToolUse | None
    prompt_tokens: int
    output_tokens: int
    # Gemini 3 puts a thoughtSignature on the (first) function call part; the rules check it comes back unchanged.
    signature: str | None = None


def contents_as_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``contents`` as role/content messages, so the shared echo helpers read them."""
    out = []
    for c in doc.get("contents") or ():
        if isinstance(c, dict):
            texts = [
                {"type": "text", "text": p["text"]} for p in c.get("parts") or () if isinstance(p, dict) and "text" in p
            ]
            out.append({"role": "user" if c.get("role", "user") == "user" else "assistant", "content": texts})
    return out


_USAGE = {
    ("usageMetadata", "promptTokenCount"): "prompt",
    ("usageMetadata", "candidatesTokenCount"): "output",
    ("usageMetadata", "totalTokenCount"): "total",
    ("usageMetadata", "promptTokensDetails", 0, "tokenCount"): "prompt",
}
_PARTIAL_USAGE = {
    ("usageMetadata", "promptTokenCount"): "prompt",
    ("usageMetadata", "totalTokenCount"): "prompt",
    ("usageMetadata", "promptTokensDetails", 0, "tokenCount"): "prompt",
}
_HEAD = {("modelVersion",): "model", ("responseId",): "id"}
_PARTS = ("candidates", 0, "content", "parts")


class GeminiWire:
    def __init__(self, root: Path = FIXTURES / "gemini") -> None:
        whole = json.loads((root / "generate_content.json").read_bytes())
        called = json.loads((root / "generate_content_function_call.json").read_bytes())
        self.response = Template(pretty(_marked(whole, {**_HEAD, _PARTS: "parts", **_USAGE})))
        chunks = [
            json.loads(b[6:]) for b in (root / "stream_generate_content.sse").read_bytes().split(b"\r\n\r\n") if b
        ]
        self.chunk = Template(
            sse(google_json(_marked(chunks[0], {**_HEAD, (*_PARTS, 0, "text"): "text", **_PARTIAL_USAGE})))
        )
        self.last_chunk = Template(sse(google_json(_marked(chunks[-1], {**_HEAD, _PARTS: "parts", **_USAGE}))))
        self.text_part = Template(google_json(_marked(whole[_PARTS[0]][0]["content"]["parts"][0], {("text",): "text"})))
        call = called["candidates"][0]["content"]["parts"][0]
        self.call_part = Template(
            google_json(_marked(call, {("functionCall", "name"): "name", ("functionCall", "args"): "args"}))
        )
        self.count = Template(
            pretty(
                _marked(
                    json.loads((root / "count_tokens.json").read_bytes()),
                    {("totalTokens",): "n", ("promptTokensDetails", 0, "tokenCount"): "n"},
                )
            )
        )
        # Google sometimes wraps an error body in a one-element array; the fake answers the plain object.
        loaded = {p.stem: json.loads(p.read_bytes()) for p in sorted(root.glob("error_*.json"))}
        self.errors = {stem: doc[0] if isinstance(doc, list) else doc for stem, doc in loaded.items()}
        self.stream_error = (root / "error_stream.sse").read_bytes()

    def _values(self, reply: GeminiReply) -> dict[str, bytes]:
        return {
            "model": jstr(reply.model),
            "id": jstr(reply.id),
            "prompt": jint(reply.prompt_tokens),
            "output": jint(reply.output_tokens),
            "total": jint(reply.prompt_tokens + reply.output_tokens),
        }

    def _parts(self, reply: GeminiReply, text: str | None) -> bytes:
        parts = [] if text is None else [self.text_part.render({"text": jstr(text)})]
        if reply.tool is not None:
            call = self.call_part.render({"name": jstr(reply.tool.name), "args": google_json(reply.tool.input)})
            if reply.signature is not None:
                call = call[:-1] + b',"thoughtSignature": ' + jstr(reply.signature) + b"}"
            parts.append(call)
        return b"[" + b",".join(parts) + b"]"

    def render_response(self, reply: GeminiReply) -> bytes:
        text = None if reply.text_chunks is None else "".join(reply.text_chunks)
        parts = json.loads(self._parts(reply, text))
        return self.response.render({**self._values(reply), "parts": nested_pretty(parts, 8)})

    def render_stream(self, reply: GeminiReply) -> list[bytes]:
        values = self._values(reply)
        pieces = reply.text_chunks or []
        out = [self.chunk.render({**values, "text": jstr(p)}) for p in pieces[:-1]]
        last = pieces[-1] if pieces else None
        out.append(self.last_chunk.render({**values, "parts": self._parts(reply, last)}))
        return out

    def error(self, stem: str, message: str | None = None) -> tuple[int, bytes]:
        doc = self.errors[stem]
        error = doc["error"] if message is None else {**doc["error"], "message": message}
        return int(error["code"]), pretty({"error": error})


def gemini_reply(doc: dict[str, Any], body: bytes, model: str) -> GeminiReply:
    messages = contents_as_messages(doc)
    text = echo_text(messages)
    functions = [
        f
        for t in doc.get("tools") or ()
        if isinstance(t, dict)
        for f in t.get("functionDeclarations") or ()
        if isinstance(f, dict) and f.get("name")
    ]
    config = (
        ((doc.get("toolConfig") or {}).get("functionCallingConfig") or {})
        if isinstance(doc.get("toolConfig"), dict)
        else {}
    )
    mode = str(config.get("mode", "AUTO")).upper()
    allowed = config.get("allowedFunctionNames") or []
    last = messages[-1]["content"][-1]["text"] if messages and messages[-1]["content"] else ""
    tool: ToolUse | None = None
    if functions and mode != "NONE" and (mode == "ANY" or TOOL_TRIGGER in last.lower()):
        chosen = next((f for f in functions if f["name"] in allowed), functions[0])
        # Google's JSON parser takes proto field names too, and google-genai sends `parameters_json_schema`.
        schema = chosen.get("parameters") or chosen.get("parametersJsonSchema") or chosen.get("parameters_json_schema")
        tool = ToolUse("", chosen["name"], tool_input_for(schema, last_user_text(messages)))
    major = rules_gemini.gemini_major(model)
    signature = sign(rules_gemini.SIGNATURE_KIND, tool.name) if tool is not None and (major or 0) >= 3 else None
    output = max(1, len(text) // 4) if tool is None else max(1, len(google_json(tool.input)) // 4) + 5
    return GeminiReply(
        model=model,
        id=_rand(23),
        text_chunks=None if tool is not None else chunk_words(text, 2),
        tool=tool,
        prompt_tokens=max(1, len(body) // 4),
        output_tokens=output,
        signature=signature,
    )


_FAILURE_STEMS = {
    400: "error_bad_json",
    403: "error_permission_denied",
    404: "error_not_found",
    429: "error_resource_exhausted",
    503: "error_unavailable",
}


async def serve(
    up: FakeUpstream, request: web.Request, body: bytes, headers: dict[str, str], model: str, method: str
) -> web.StreamResponse:
    wire: GeminiWire = up.gemini
    failure = up._take_failure()
    if failure is not None:
        if failure.body is not None:
            return _json(failure.status, pretty(failure.body), failure.headers)
        _, raw = wire.error(_FAILURE_STEMS.get(failure.status, "error_internal"))
        doc = json.loads(raw)
        doc["error"]["code"] = failure.status
        return _json(failure.status, pretty(doc), failure.headers)
    if up.require_auth:
        key = headers.get("x-goog-api-key", "") or request.query.get("key", "")
        if not key:
            return _json(*wire.error("error_permission_denied"))
        if up.valid_keys is not None and key not in up.valid_keys:
            return _json(*wire.error("error_api_key_invalid"))
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        return _json(*wire.error("error_bad_json", "Invalid JSON payload received."))
    if "error-429" in model:
        return _json(*wire.error("error_resource_exhausted"), {"retry-after": "1"})
    if "error-500" in model:
        return _json(*wire.error("error_internal"))
    if "error-529" in model:
        return _json(*wire.error("error_unavailable"))
    if "slow" in model:
        await asyncio.sleep(up.slow_delay)
    if method == "countTokens":
        inner = doc.get("generateContentRequest")
        counted = json.dumps(inner).encode() if isinstance(inner, dict) else body
        return _json(200, wire.count.render({"n": jint(max(1, len(counted) // 4))}))
    refused = rules_gemini.check(doc, model)
    if refused is not None:
        return refuse(wire, refused)
    reply = gemini_reply(doc, body, model)
    if method == "generateContent":
        return _json(200, wire.render_response(reply))
    return await _stream(up, request, wire.render_stream(reply), model, wire.stream_error)


def refuse(wire: GeminiWire, refusal: Refusal) -> web.Response:
    """A request Gemini refuses: 400 INVALID_ARGUMENT with Google's message."""
    status, body = wire.error("error_invalid_argument", refusal.message)
    return _json(status, body)


def _json(status: int, body: bytes, extra: dict[str, str] | None = None) -> web.Response:
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "Server": "scaffolding on HTTPServer2",
        "Vary": "Origin",
    }
    return web.Response(status=status, body=body, headers={**headers, **(extra or {})})


async def _stream(
    up: FakeUpstream, request: web.Request, events: list[bytes], model: str, error_event: bytes
) -> web.StreamResponse:
    headers = {"Content-Type": "text/event-stream", "Server": "scaffolding on HTTPServer2", "Vary": "Origin"}
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(request)
    if "stream-abort" in model or "stream-error" in model:
        for event in events[: up.abort_after_events]:
            await response.write(event)
        if "stream-error" in model:
            await response.write(error_event)
            await response.write_eof()
            return response
        await _drop_connection(request)
        return response
    for event in events:
        if up.event_delay:
            await asyncio.sleep(up.event_delay)
        await response.write(event)
    await response.write_eof()
    up.record_stream(events)
    return response
