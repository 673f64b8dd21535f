"""The translation bridge: a caller of one API surface reaches a provider of another.

Pass-through stays the rule: when the provider speaks the caller's format the engine never comes
here. Otherwise one `Translation` per attempt carries the request across, through the canonical
types (`sluice.core.canonical`) and the codecs (`sluice.formats.codecs`):

    caller's body --decode--> ChatRequest --encode--> provider's body (model = the routed target)
    provider's answer --decode--> ChatResponse / stream events --encode--> caller's format

Metering never changes: the engine observes the provider's own bytes (usage, budget cut-offs,
content capture) before they come here, so a translated stream is billed exactly like a native one.
Errors are not rendered here either: an upstream error body becomes a canonical `Failure` that the
HTTP edge (`http/errors.py`) turns into the caller's error shape, and an in-stream failure becomes
a `SluiceError` the edge sends as the caller's in-stream error event.

Token counting goes to the target's counting endpoint (Anthropic count_tokens, Gemini countTokens,
Responses input_tokens); a provider with none gets a local estimate (`local_count`).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from sluice.core.canonical import (
    ChatRequest,
    Failure,
    Image,
    Part,
    StreamEvent,
    Text,
    Thinking,
    ToolCall,
    ToolResult,
    Untranslatable,
)
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.formats.codec import Codec, StreamEncoder
from sluice.formats.codecs import codec_for
from sluice.providers.base import Provider

# Where each format counts tokens, and the request fields its counting endpoint accepts.
_COUNT_FIELDS: dict[WireFormat, frozenset[str]] = {
    WireFormat.ANTHROPIC_MESSAGES: frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking"}),
    WireFormat.OPENAI_RESPONSES: frozenset(
        {"model", "input", "instructions", "tools", "tool_choice", "reasoning", "text", "parallel_tool_calls"}
    ),
}
# The local estimate's ratio: about four characters a token in English text and code, the figure
# Anthropic, OpenAI and Google all quote; images count a flat 1,600 tokens (a large one's cost).
CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600


def codec(wire: WireFormat) -> Codec | None:
    try:
        return codec_for(wire)
    except LookupError:
        return None


def request_wire(wire: WireFormat, doc: dict[str, Any]) -> WireFormat:
    """The format the caller's body is really in. Cursor's agent mode posts Responses-shaped bodies
    (`input`, flat tools) to /v1/chat/completions and reads Chat Completions back."""
    if wire is WireFormat.OPENAI_CHAT and "messages" not in doc and "input" in doc:
        return WireFormat.OPENAI_RESPONSES
    return wire


def target_of(
    provider: Provider, model: str, wire: WireFormat, operation: Operation, doc: dict[str, Any]
) -> tuple[WireFormat | None, bool]:
    """(the provider's format for this request, whether the body must be translated into it)."""
    spoken, source = provider.speaks(wire, operation), request_wire(wire, doc)
    if spoken and source is wire:
        return wire, False  # pass-through: the hot path
    if source is not wire and provider.speaks(source, operation):
        # Cursor's Responses-shaped body goes to a Responses endpoint as it is meant (its custom
        # tools survive); only the answer is translated back into Chat Completions.
        return source, True
    return (wire if spoken else provider.wire_for(model, operation)), True


def reaches(provider: Provider, model: str, wire: WireFormat, operation: Operation, doc: dict[str, Any]) -> bool:
    target, translate = target_of(provider, model, wire, operation, doc)
    return not translate or reachable(request_wire(wire, doc), target, operation)


class Inbound(Protocol):
    wire: WireFormat
    operation: Operation
    doc: dict[str, Any]
    model: str | None


def bridge_for(
    provider: Provider, model: str, inbound: Inbound, canonical: ChatRequest | None
) -> tuple[WireFormat | None, Translation | None, ChatRequest | None]:
    """(target format, translation or None for pass-through, the canonical request decoded once
    per request). A None target is a token count the provider cannot make (see `local_count`)."""
    target, translate = target_of(provider, model, inbound.wire, inbound.operation, inbound.doc)
    if not translate:
        return target, None, canonical
    if canonical is None:
        canonical = decode(request_wire(inbound.wire, inbound.doc), inbound.operation, inbound.doc, inbound.model)
    if target is None:
        return None, None, canonical
    return target, Translation(inbound.wire, target, inbound.operation, canonical), canonical


def reachable(source: WireFormat, target: WireFormat | None, operation: Operation) -> bool:
    """Whether a caller of `source` can reach a provider that takes `target`, by translation."""
    if operation not in (Operation.GENERATE, Operation.COUNT_TOKENS) or codec(source) is None:
        return False
    if target is None:
        return operation is Operation.COUNT_TOKENS  # a provider that cannot count gets an estimate
    return codec(target) is not None


def decode(wire: WireFormat, operation: Operation, doc: dict[str, Any], model: str | None) -> ChatRequest:
    """The caller's request, canonical. Raises a 400 in the caller's terms when it cannot be read."""
    found = codec(wire)
    if found is None:
        raise SluiceError(ErrorKind.GATEWAY_UNSUPPORTED, f"Requests in the {wire.value} format cannot be translated.")
    if operation is Operation.COUNT_TOKENS and wire is WireFormat.GEMINI and "generateContentRequest" in doc:
        inner = doc["generateContentRequest"]
        doc = inner if isinstance(inner, dict) else {}
    try:
        return found.decode_request(doc, model)
    except Untranslatable as exc:
        raise untranslatable(wire, None, str(exc)) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # A malformed body (a string where a list belongs): the caller's mistake, said as a 400.
        raise SluiceError(
            ErrorKind.CALLER_BAD_REQUEST, f"The request is not a valid {wire.value} request: {exc!r}"
        ) from None


def untranslatable(source: WireFormat, target: WireFormat | None, why: str) -> SluiceError:
    where = f" into the {target.value} format its provider speaks" if target is not None else ""
    return SluiceError(ErrorKind.CALLER_BAD_REQUEST, f"This {source.value} request cannot be translated{where}: {why}")


class Answer(Protocol):
    """The engine's Outcome, as far as translating it goes."""

    status: int
    content_type: str
    body: bytes | None
    chunks: AsyncIterator[bytes] | None
    failure: Failure | None


@dataclass(slots=True)
class Translation:
    """One attempt's crossing: `answer` is the caller's format, `target` the provider's."""

    answer: WireFormat
    target: WireFormat
    operation: Operation
    request: ChatRequest

    def _codecs(self) -> tuple[Codec, Codec]:
        source, target = codec(self.answer), codec(self.target)
        assert source is not None and target is not None  # checked by `reachable` when planning
        return source, target

    def body(self, model: str, stream: bool) -> tuple[bytes, dict[str, Any]]:
        """The provider's request body and its parsed form."""
        _, target = self._codecs()
        request = replace(self.request, model=model, stream=stream and self.operation is Operation.GENERATE)
        try:
            doc = target.encode_request(request)
        except Untranslatable as exc:
            raise untranslatable(self.answer, self.target, str(exc)) from None
        if self.operation is Operation.COUNT_TOKENS:
            doc = _count_request(self.target, doc, model)
        elif stream and self.target is WireFormat.OPENAI_CHAT:
            # Chat streams carry usage only when asked: ask, so the provider's stream can be metered.
            opts = doc.get("stream_options")
            doc["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
        elif isinstance(doc.get("stream_options"), dict) and self.target is WireFormat.OPENAI_RESPONSES:
            # Cursor sends Chat's include_usage along with a Responses body; the Responses API refuses it.
            opts = {k: v for k, v in doc["stream_options"].items() if k != "include_usage"}
            doc.pop("stream_options")
            if opts:
                doc["stream_options"] = opts
        return orjson.dumps(doc), doc

    def response(self, body: bytes) -> bytes:
        """A whole (non-streamed) provider answer, in the caller's format."""
        source, target = self._codecs()
        doc = _json(body)
        if self.operation is Operation.COUNT_TOKENS:
            return count_body(self.answer, _counted(self.target, doc))
        try:
            return orjson.dumps(source.encode_response(target.decode_response(doc)))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # Untranslatable is a ValueError
            raise _unanswerable(self.target, self.answer, str(exc)) from None

    def failure(self, status: int, body: bytes) -> Failure:
        """An upstream error body (status >= 400), canonical, for the edge to render."""
        _, target = self._codecs()
        try:
            return target.decode_error(status, body)
        except (Untranslatable, ValueError, TypeError, KeyError):
            return Failure(status, body.decode("utf-8", "replace")[:500] or f"upstream status {status}")

    def carry(self, answer: Answer) -> None:
        """Carries the provider's (already metered) answer across to the caller's format."""
        if answer.status >= 400:
            answer.failure = self.failure(answer.status, answer.body or b"")
        elif answer.chunks is not None:
            source, _ = self._codecs()
            encoder = source.stream_encoder(self.request)
            answer.chunks, answer.content_type = self.stream(answer.chunks, encoder), encoder.content_type
        elif answer.body is not None:
            answer.body, answer.content_type = self.response(answer.body), "application/json"

    async def stream(self, chunks: AsyncIterator[bytes], encoder: StreamEncoder) -> AsyncIterator[bytes]:
        """The provider's stream, re-encoded event by event for the caller."""
        _, target = self._codecs()
        decoder = target.stream_decoder()
        iterator = chunks.__aiter__()
        try:
            async for chunk in iterator:
                out, failure = self._encode(encoder, decoder.feed(chunk))
                if out:
                    yield out  # what came before a failure in the same chunk still goes out
                if failure is not None:
                    raise failure
            out, failure = self._encode(encoder, decoder.close())
            if out or failure is None:
                yield out + (encoder.close() if failure is None else b"")
            if failure is not None:
                raise failure
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    def _encode(self, encoder: StreamEncoder, events: Iterable[StreamEvent]) -> tuple[bytes, SluiceError | None]:
        """The caller's bytes for `events`, and the failure that ended them, if one did. A failure
        is not encoded here: the edge sends it as the caller's in-stream error (or as a plain
        error, and a fallback, when nothing was sent yet)."""
        out: list[bytes] = []
        for event in events:
            if isinstance(event, Failure):
                return b"".join(out), SluiceError(kind_of(event.status), event.message, upstream_status=event.status)
            try:
                out.append(encoder.encode(event))
            except Untranslatable as exc:
                raise _unanswerable(self.target, self.answer, str(exc)) from None
        return b"".join(out), None


def kind_of(status: int) -> ErrorKind:
    """The error kind an upstream status stands for, so retries and fallbacks treat it as usual."""
    if status == 429:
        return ErrorKind.PROVIDER_RATE_LIMITED
    if status in (503, 529):
        return ErrorKind.PROVIDER_OVERLOADED
    if status in (408, 504):
        return ErrorKind.PROVIDER_TIMEOUT
    if status in (401, 403):
        return ErrorKind.PROVIDER_AUTH
    return ErrorKind.PROVIDER_ERROR


def _unanswerable(target: WireFormat, answer: WireFormat, why: str) -> SluiceError:
    return SluiceError(
        ErrorKind.PROVIDER_ERROR, f"The provider's {target.value} answer cannot be expressed in {answer.value}: {why}"
    )


def _json(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict):
        raise SluiceError(ErrorKind.PROVIDER_ERROR, "The provider's answer is not a JSON object.")
    return doc


# --- token counting ------------------------------------------------------------------------------


def _count_request(target: WireFormat, doc: dict[str, Any], model: str) -> dict[str, Any]:
    if target is WireFormat.GEMINI:
        return {"generateContentRequest": {**doc, "model": f"models/{model}"}}
    fields = _COUNT_FIELDS.get(target)
    return {k: v for k, v in doc.items() if k in fields} if fields else doc


def _counted(target: WireFormat, doc: dict[str, Any]) -> int:
    value = doc.get("totalTokens") if target is WireFormat.GEMINI else doc.get("input_tokens")
    if not isinstance(value, int):
        raise SluiceError(ErrorKind.PROVIDER_ERROR, "The provider's token count has no count in it.")
    return value


def count_body(wire: WireFormat, tokens: int) -> bytes:
    """A token count in the caller's counting shape."""
    if wire is WireFormat.GEMINI:
        return orjson.dumps({"totalTokens": tokens})
    if wire is WireFormat.OPENAI_RESPONSES:
        return orjson.dumps({"object": "response.input_tokens", "input_tokens": tokens})
    return orjson.dumps({"input_tokens": tokens})


def local_count(request: ChatRequest) -> int:
    """An estimate for providers that cannot count: characters of every text the model would read
    (system, messages, tool calls and results, tool definitions) over `CHARS_PER_TOKEN`, plus
    `IMAGE_TOKENS` per image. Real tokenizers differ by tens of percent; callers use the count to
    decide when to compact a conversation, where an estimate serves."""
    chars, images = sum(len(t.text) for t in request.system), 0
    for message in request.messages:
        c, i = _size(message.parts)
        chars, images = chars + c, images + i
    for tool in request.tools:
        chars += len(tool.name) + len(tool.description) + len(json.dumps(tool.parameters))
    return max(1, math.ceil(chars / CHARS_PER_TOKEN) + images * IMAGE_TOKENS)


def _size(parts: Iterable[Part]) -> tuple[int, int]:
    """(characters, images) in some content parts."""
    chars = images = 0
    for part in parts:
        if isinstance(part, Text | Thinking):
            chars += len(part.text)
        elif isinstance(part, Image):
            images += 1
        elif isinstance(part, ToolCall):
            chars += len(part.name) + len(part.arguments_json)
        elif isinstance(part, ToolResult):
            c, i = _size(part.content)
            chars, images = chars + c, images + i
    return chars, images
