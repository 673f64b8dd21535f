"""A deterministic provider chosen by model name, for demos and tests; it makes no network call.

- `echo` (any other name too): answers "echo: <last user text>"
- `slow`: waits `SLOW_DELAY` seconds before the first byte
- `tool`: answers with a tool call to the first tool of the request
- `long`: answers with 10,000 characters, streamed in many pieces
- `error-429`, `error-500`, `error-529`: fails as a provider would
- `stream-abort`: breaks the stream after its first events
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import orjson

from sluice.core.canonical import ChatRequest, ChatResponse, Part, StopReason, Text, ToolCall
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, Usage, WireFormat
from sluice.formats import openai_embeddings
from sluice.formats.codec import Codec
from sluice.formats.codec_support import response_events, stamp_created
from sluice.formats.registry import record_of
from sluice.providers.base import ProviderCall, ProviderError, ProviderKey, ProviderReply, kind_of_status, seconds_of
from sluice.upstream.client import Timeouts

SLOW_DELAY = 0.2
_ERRORS = {
    "error-429": (429, "fake provider: rate limited", {"retry-after": "1"}),
    "error-500": (500, "fake provider: internal error", {}),
    "error-529": (529, "fake provider: overloaded", {}),
}


class FakeProvider:
    type = "fake"
    model_in_url = False

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.keys: list[ProviderKey] = []
        self.timeouts = Timeouts()

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return True

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        # Never consulted (the fake speaks every format); Messages is the richest if it were.
        return WireFormat.ANTHROPIC_MESSAGES if operation is not Operation.EMBED else WireFormat.OPENAI_EMBEDDINGS

    def serves(self, model: str) -> bool:
        return True

    def parse_error(self, reply: ProviderReply, call: ProviderCall) -> ProviderError:
        return _parse_error(self.name, reply)

    async def send(self, call: ProviderCall) -> ProviderReply:
        behaviour = call.model.rsplit("/", 1)[-1]
        if behaviour in _ERRORS:
            status, message, headers = _ERRORS[behaviour]
            return ProviderReply(status, "text/plain", dict(headers), body=message.encode())
        input_tokens = max(1, len(call.body) // 4)
        record = record_of(call.wire)
        if call.operation is Operation.COUNT_TOKENS:
            return _json(orjson.dumps(record.counting.answer(input_tokens)))
        if call.operation is Operation.EMBED:
            inputs = call.doc.get("input")
            texts = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []]
            vectors = [_vector(text) for text in texts]
            return _json(orjson.dumps(openai_embeddings.answer(call.model, vectors, Usage(input_tokens=input_tokens))))
        if record.codec is None:
            raise SluiceError(ErrorKind.GATEWAY_UNSUPPORTED, f"fake provider: no answers in {call.wire.value}")
        # The answer is written the one way answers are written in every format: canonical types
        # through the format's codec (sluice.formats), as the translation bridge writes them.
        codec = record.codec
        request = _request(codec, call)
        answer = _answer(call, request, input_tokens, record.answer_id_prefix or "fake_")
        if behaviour == "slow":
            await asyncio.sleep(SLOW_DELAY)
        if not call.stream:
            return _json(stamp_created(orjson.dumps(codec.encode_response(answer, request)), int(time.time())))
        encoder = codec.stream_encoder(request)
        text = sum(len(p.text) for p in answer.content if isinstance(p, Text))
        now = int(time.time())
        chunks = [encoder.encode(event) for event in response_events(answer, pieces=max(4, text // 100))]
        chunks.append(encoder.close())
        events = [stamp_created(chunk, now) for chunk in chunks if chunk]
        return ProviderReply(200, encoder.content_type, chunks=_stream(events, abort=behaviour == "stream-abort"))


def _parse_error(name: str, reply: ProviderReply) -> ProviderError:
    # The fake's error bodies are plain text: the gateway says them in its own words.
    message = (reply.body or b"").decode()
    return ProviderError(
        kind_of_status(reply.status), message, reply.status, retry_after=seconds_of(reply.headers.get("retry-after"))
    )


def _json(body: bytes) -> ProviderReply:
    return ProviderReply(200, "application/json", body=body)


async def _stream(events: list[bytes], *, abort: bool) -> AsyncIterator[bytes]:
    for n, event in enumerate(events):
        if abort and n == 3:
            raise SluiceError(ErrorKind.PROVIDER_STREAM_BROKEN, "fake provider: stream aborted")
        yield event


def _vector(text: str, dims: int = 8) -> list[float]:
    seed = sum(text.encode()) or 1
    return [((seed * (k + 1)) % 997) / 997.0 for k in range(dims)]


def _request(codec: Codec, call: ProviderCall) -> ChatRequest:
    """The request, read as its format's codec reads it; a body it cannot read is answered as an
    empty conversation (the fake is lenient here: the strict fakes are tests/fakes/*)."""
    try:
        return codec.decode_request(call.doc, call.model)
    except (ValueError, TypeError, KeyError, AttributeError):  # Untranslatable is a ValueError
        return ChatRequest(model=call.model, messages=[], stream=call.stream)


def _answer(call: ProviderCall, request: ChatRequest, input_tokens: int, prefix: str) -> ChatResponse:
    text = "echo: " + _last_user_text(request)[:200]
    if call.model.endswith("long"):
        text = "lorem ipsum " * 833
    content: list[Part] = [Text(text)]
    stop: StopReason = "end_turn"
    if call.model.endswith("tool") and request.tools:
        content.append(
            ToolCall("toolu_" + uuid.uuid4().hex[:20], request.tools[0].name or "tool", '{"query":"sluice"}')
        )
        stop = "tool_use"
    output_tokens = max(1, len(text) // 4)
    if request.max_tokens is not None and output_tokens > request.max_tokens:
        output_tokens, stop = request.max_tokens, "max_tokens"
    return ChatResponse(
        id=prefix + uuid.uuid4().hex[:24],
        model=call.model,
        content=content,
        stop_reason=stop,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
    )


def _last_user_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        texts = [p.text for p in message.parts if isinstance(p, Text)]
        if texts:
            return texts[-1]
    return ""
