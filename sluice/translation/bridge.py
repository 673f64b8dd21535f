"""One attempt's crossing: the provider's request body, and its answer (whole, streamed, or an
error) carried back into the caller's format."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson

from sluice.core.canonical import (
    BlockStart,
    ChatRequest,
    ChatResponse,
    Failure,
    Start,
    StreamEvent,
    Tool,
    ToolCall,
    Untranslatable,
)
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.formats.codec import Codec, StreamDecoder, StreamEncoder
from sluice.formats.codecs import codec_for
from sluice.formats.json_body import encode_body
from sluice.formats.tool_names import caller_names, for_target
from sluice.translation.counts import count_body, count_request, counted


def codec(wire: WireFormat) -> Codec | None:
    try:
        return codec_for(wire)
    except LookupError:
        return None


def untranslatable(source: WireFormat, target: WireFormat | None, why: str) -> SluiceError:
    where = f" into the {target.value} format its provider speaks" if target is not None else ""
    message = f"This {source.value} request cannot be translated{where}: {why}"
    return SluiceError(ErrorKind.CALLER_UNTRANSLATABLE, message)


def kept_tools(request: ChatRequest, target: WireFormat) -> tuple[list[Tool], tuple[str, ...]]:
    """(the tools the target gets, the names of the optional vendor tools it cannot run). A model
    without such a tool (a hosted web search among an agent's tools) answers without it; any other
    vendor tool of another format is refused by the target's codec."""
    kept: list[Tool] = []
    dropped: list[str] = []
    for tool in request.tools:
        if tool.native is not None and tool.origin != target.value and tool.optional:
            dropped.append(str(tool.native.get("type") or tool.name))
        else:
            kept.append(tool)
    return (kept, tuple(dict.fromkeys(dropped))) if dropped else (request.tools, ())


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
    raw: dict[str, Any] | None = None  # a body already in the target's format: only the answer crosses
    dropped: tuple[str, ...] = ()  # optional vendor tools the target cannot run, left out of `body`

    def _codecs(self) -> tuple[Codec, Codec]:
        source, target = codec(self.answer), codec(self.target)
        assert source is not None and target is not None  # checked by `reachable` when planning
        return source, target

    def body(self, model: str, stream: bool) -> tuple[bytes, dict[str, Any]]:
        """The provider's request body and its parsed form."""
        _, target = self._codecs()
        request = replace(self.request, model=model, stream=stream and self.operation is Operation.GENERATE)
        if self.raw is None:
            request.tools, self.dropped = kept_tools(request, self.target)
            if self.dropped and not request.tools and request.tool_choice is not None:
                if request.tool_choice.mode in ("any", "tool"):
                    why = f"tool_choice requires a tool, and {', '.join(self.dropped)} cannot run there"
                    raise untranslatable(self.answer, self.target, why)
                request.tool_choice = None  # no tools left to choose from (Chat refuses a choice alone)
        try:
            if self.raw is None:
                request = for_target(request, target.tool_names)  # names the target accepts
            doc = {**self.raw, "model": model} if self.raw is not None else target.encode_request(request)
        except Untranslatable as exc:
            raise untranslatable(self.answer, self.target, str(exc)) from None
        if self.operation is Operation.COUNT_TOKENS:
            doc = count_request(self.target, doc, model)
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
        return encode_body(doc), doc

    def response(self, body: bytes, request_id: str = "", model: str = "") -> bytes:
        """A whole (non-streamed) provider answer, in the caller's format. `request_id` and the
        routed `model` fill an answer that names neither (Bedrock Converse carries no id or model)."""
        source, target = self._codecs()
        doc = _json(body)
        if self.operation is Operation.COUNT_TOKENS:
            return count_body(self.answer, counted(self.target, doc))
        try:
            decoded = self._named(target.decode_response(doc), request_id, model)
            return _stamped(orjson.dumps(source.encode_response(decoded, self.request)))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # Untranslatable is a ValueError
            raise _unanswerable(self.target, self.answer, str(exc)) from None

    def failure(self, status: int, body: bytes) -> Failure:
        """An upstream error body (status >= 400), canonical, for the edge to render."""
        _, target = self._codecs()
        try:
            return target.decode_error(status, body)
        except (Untranslatable, ValueError, TypeError, KeyError):
            return Failure(status, body.decode("utf-8", "replace")[:500] or f"upstream status {status}")

    def carry(self, answer: Answer, request_id: str = "", model: str = "") -> None:
        """Carries the provider's (already metered) answer across to the caller's format.
        `request_id` and the routed `model` name an answer whose format leaves them out."""
        if answer.status >= 400:
            answer.failure = self.failure(answer.status, answer.body or b"")
        elif answer.chunks is not None:
            source, _ = self._codecs()
            encoder = source.stream_encoder(self.request)
            chunks = self.stream(answer.chunks, encoder, request_id, model)
            answer.chunks, answer.content_type = chunks, encoder.content_type
        elif answer.body is not None:
            answer.body, answer.content_type = self.response(answer.body, request_id, model), "application/json"

    def _caller_names(self) -> dict[str, str]:
        """The target's tool name -> the caller's, for the tools `body` gave another name."""
        _, target = self._codecs()
        return caller_names(self.request, target.tool_names)

    def _named(self, response: ChatResponse, request_id: str, model: str) -> ChatResponse:
        if back := self._caller_names():
            for part in response.content:
                if isinstance(part, ToolCall):
                    part.name = back.get(part.name, part.name)
        if not response.id:
            response.id = answer_id(self.answer, request_id)
        if not response.model:
            response.model = model or self.request.model
        return response

    def stream_translator(self, request_id: str = "", model: str = "") -> StreamTranslator:
        """The provider's stream re-encoded for the caller, chunk by chunk (`StreamTranslator`)."""
        source, target = self._codecs()
        return StreamTranslator(self, target.stream_decoder(), source.stream_encoder(self.request), request_id, model)

    async def stream(
        self, chunks: AsyncIterator[bytes], encoder: StreamEncoder, request_id: str = "", model: str = ""
    ) -> AsyncIterator[bytes]:
        """The provider's stream, re-encoded event by event for the caller."""
        _, target = self._codecs()
        feed = StreamTranslator(self, target.stream_decoder(), encoder, request_id, model)
        iterator = chunks.__aiter__()
        try:
            async for chunk in iterator:
                out = feed.feed(chunk)
                if out:
                    yield out  # what came before a failure in the same chunk still goes out
                if feed.failure is not None:
                    raise feed.failure
            out = feed.close()
            if out or feed.failure is None:
                yield out
            if feed.failure is not None:
                raise feed.failure
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


class StreamTranslator:
    """A synchronous feed: the provider's stream chunks in, the caller's bytes out. A provider's
    in-stream error ends it: `failure` is then set (after the bytes that came before it), for the
    edge to send as the caller's in-stream error (or as a plain error, and a fallback, when
    nothing was sent yet)."""

    def __init__(
        self, translation: Translation, decoder: StreamDecoder, encoder: StreamEncoder, request_id: str, model: str
    ) -> None:
        self.content_type = encoder.content_type
        self.failure: SluiceError | None = None
        self._translation = translation
        self._decoder = decoder
        self._encoder = encoder
        self._request_id = request_id
        self._model = model
        self._back = translation._caller_names()

    def _named(self, events: list[StreamEvent]) -> list[StreamEvent]:
        back = self._back
        for event in events:
            if isinstance(event, BlockStart) and event.kind == "tool_call" and back:
                event.name = back.get(event.name, event.name)
            elif isinstance(event, Start):
                event.id = event.id or answer_id(self._translation.answer, self._request_id)
                event.model = event.model or self._model or self._translation.request.model
        return events

    def feed(self, chunk: bytes) -> bytes:
        out, self.failure = self._translation._encode(self._encoder, self._named(self._decoder.feed(chunk)))
        return _stamped(out) if out else b""

    def close(self) -> bytes:
        """The stream's end: what the decoder still held, and the encoder's closing bytes."""
        out, self.failure = self._translation._encode(self._encoder, self._named(self._decoder.close()))
        if self.failure is None:
            out += self._encoder.close()
        return _stamped(out) if out else b""


# Codecs have no clock: OpenAI's `created` / `created_at` come out as 0, and are stamped here.
# The compact key cannot occur inside a JSON string (its quotes would be escaped there).
_UNSTAMPED = (b'"created":0,', b'"created_at":0,')


def _stamped(out: bytes) -> bytes:
    if b'":0,' not in out:
        return out
    now = str(int(time.time())).encode()
    return out.replace(_UNSTAMPED[0], b'"created":' + now + b",").replace(_UNSTAMPED[1], b'"created_at":' + now + b",")


# What each caller's format names its answers: the request id behind the format's own prefix.
_ID_PREFIX = {
    WireFormat.ANTHROPIC_MESSAGES: "msg_",
    WireFormat.OPENAI_CHAT: "chatcmpl-",
    WireFormat.OPENAI_RESPONSES: "resp_",
}


def answer_id(answer: WireFormat, request_id: str) -> str:
    """An id for an answer whose provider gave none (Bedrock Converse), made from the request id."""
    return _ID_PREFIX.get(answer, "") + (request_id or "sluice")


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
