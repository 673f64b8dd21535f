"""The one stream observer over every wire format's stream, and the record of each format.

Streams are written the one way answers are written (canonical types through each format's own
stream encoder, `codec_support.response_events`), then fed to the observer cut at every kind of
boundary: what it reads must not depend on where the chunks split."""

from __future__ import annotations

import random

import orjson
import pytest

from sluice.core.canonical import ChatRequest, ChatResponse, Text, ToolCall
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Usage, WireFormat
from sluice.formats.anthropic import wire as anthropic_messages
from sluice.formats.aws_eventstream import FrameDecoder
from sluice.formats.codec_support import response_events
from sluice.formats.codecs import codec_for
from sluice.formats.openai_chat import wire as openai_chat
from sluice.formats.openai_common import error_body as openai_error_body
from sluice.formats.registry import record_of
from sluice.formats.sse import SSEDecoder
from sluice.http.errors import error_body, status_of, stream_error_event
from sluice.metering import stream_observer

STREAMED = (
    WireFormat.ANTHROPIC_MESSAGES,
    WireFormat.OPENAI_CHAT,
    WireFormat.OPENAI_RESPONSES,
    WireFormat.GEMINI,
    WireFormat.BEDROCK_CONVERSE,
)
TEXT = 'hello world, "quoted" and ünïcode'
ARGS = '{"q":"x"}'


def _split_everywhere(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_sse_decoder_is_independent_of_chunk_boundaries(size: int) -> None:
    stream = b'event: a\ndata: {"x":1}\n\n: comment\n\nevent: b\r\ndata: line1\r\ndata: line2\r\n\r\n'
    decoder = SSEDecoder()
    events = [e for chunk in _split_everywhere(stream, size) for e in decoder.feed(chunk)]
    assert [(e.event, e.data) for e in events] == [("a", b'{"x":1}'), ("message", b""), ("b", b"line1\nline2")]


def _answer(tool: bool = False) -> ChatResponse:
    content: list[Text | ToolCall] = [Text(TEXT)]
    if tool:
        content.append(ToolCall("toolu_1", "search", ARGS))
    return ChatResponse(
        "msg_1", "m", content, "tool_use" if tool else "end_turn", usage=Usage(10, 5, 3, 0 if tool else 2)
    )


def _stream(wire: WireFormat, answer: ChatResponse, include_usage: bool = True) -> bytes:
    extra = {wire.value: {"stream_options": {"include_usage": include_usage}}}
    encoder = codec_for(wire).stream_encoder(ChatRequest(model="m", messages=[], stream=True, extra=extra))
    return b"".join(encoder.encode(e) for e in response_events(answer)) + encoder.close()


# What each format's usage object can say: Chat and Responses have no cache writes; Gemini neither.
_READ_BACK = {
    WireFormat.ANTHROPIC_MESSAGES: Usage(10, 5, 3, 2),
    WireFormat.OPENAI_CHAT: Usage(12, 5, 3),  # prompt_tokens counts the cache writes as input
    WireFormat.OPENAI_RESPONSES: Usage(12, 5, 3),
    WireFormat.GEMINI: Usage(12, 5, 3),
    WireFormat.BEDROCK_CONVERSE: Usage(10, 5, 3, 2),
}


@pytest.mark.parametrize("size", [1, 13, 100_000])
@pytest.mark.parametrize("wire", STREAMED)
def test_the_observer_reads_every_format_whatever_the_chunk_boundaries(wire: WireFormat, size: int) -> None:
    stream = _stream(wire, _answer())
    observer = stream_observer(wire, False)
    out = b"".join(observer.feed(c) for c in _split_everywhere(stream, size))
    assert out == stream  # bytes pass unchanged
    assert observer.usage == _READ_BACK[wire] and observer.usage.reported
    assert observer.completed and observer.error is None
    assert observer.output_chars == 0  # not measured unless asked


@pytest.mark.parametrize("size", [1, 100_000])
@pytest.mark.parametrize("wire", STREAMED)
def test_the_observer_measures_and_captures_generated_text(wire: WireFormat, size: int) -> None:
    stream = _stream(wire, _answer(tool=True))
    observer = stream_observer(wire, False)
    observer.count_output, observer.captured = True, []
    for chunk in _split_everywhere(stream, size):
        observer.feed(chunk)
    assert "".join(observer.captured) == TEXT + ARGS
    # Read from the raw JSON: escapes count a little high, which errs on the side of budgets.
    assert len(TEXT + ARGS) <= observer.output_chars <= len(orjson.dumps(TEXT + ARGS))


@pytest.mark.parametrize("wire", STREAMED)
def test_the_observer_reads_each_formats_in_stream_error(wire: WireFormat) -> None:
    observer = stream_observer(wire, False)
    observer.feed(record_of(wire).error_event(429, "slow down", None))
    assert observer.error is not None


@pytest.mark.parametrize("size", [1, 50, 100_000])
def test_openai_observer_hides_only_the_usage_chunk_it_asked_for(size: int) -> None:
    stream = _stream(WireFormat.OPENAI_CHAT, _answer())
    obs = stream_observer(WireFormat.OPENAI_CHAT, True)
    out = b"".join(obs.feed(c) for c in _split_everywhere(stream, size))
    assert obs.usage == Usage(input_tokens=12, output_tokens=5, cache_read_tokens=3)
    datas = [line for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert datas[-1] == b"data: [DONE]"
    assert all(orjson.loads(d[6:])["choices"] for d in datas[:-1])  # the usage-only chunk is gone
    assert len(datas) == len([x for x in stream.split(b"\n") if x.startswith(b"data: ")]) - 1


def test_openai_observer_passes_bytes_when_caller_asked_for_usage() -> None:
    stream = _stream(WireFormat.OPENAI_CHAT, _answer())
    obs = stream_observer(WireFormat.OPENAI_CHAT, False)
    assert b"".join(obs.feed(c) for c in _split_everywhere(stream, 9)) == stream
    assert obs.usage.output_tokens == 5


def test_hide_usage_leaves_event_stream_frames_alone() -> None:
    # Only SSE streams have an OpenAI usage chunk to take out; a frame stream passes whole.
    stream = _stream(WireFormat.BEDROCK_CONVERSE, _answer())
    obs = stream_observer(WireFormat.BEDROCK_CONVERSE, True)
    assert b"".join(obs.feed(c) for c in _split_everywhere(stream, 5)) == stream


def test_anthropic_stream_shape_with_tool_call() -> None:
    stream = _stream(WireFormat.ANTHROPIC_MESSAGES, _answer(tool=True))
    events = [orjson.loads(e.data) for e in SSEDecoder().feed(stream)]
    types = [e["type"] for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    partial = "".join(
        e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta"
    )
    assert orjson.loads(partial) == {"q": "x"}


def test_every_wire_format_has_one_record() -> None:
    for wire in WireFormat:
        record = record_of(wire)
        assert record.wire is wire
        assert (record.codec is None) == (wire is WireFormat.OPENAI_EMBEDDINGS)
        assert record.codec is None or record.codec.wire is wire


def test_error_bodies_have_each_surface_shape() -> None:
    a = orjson.loads(anthropic_messages.error_body(403, "no", None, "req_1"))
    assert a == {"type": "error", "error": {"type": "permission_error", "message": "no"}, "request_id": "req_1"}
    o = orjson.loads(openai_error_body(403, "no", "model_not_allowed"))
    assert o == {"error": {"message": "no", "type": "permission_denied", "param": None, "code": "model_not_allowed"}}


def test_status_mapping_is_each_formats_own() -> None:
    overloaded = SluiceError(ErrorKind.PROVIDER_OVERLOADED, "busy")
    assert status_of(overloaded, WireFormat.ANTHROPIC_MESSAGES) == 529
    assert {status_of(overloaded, w) for w in WireFormat if w is not WireFormat.ANTHROPIC_MESSAGES} == {503}
    budget = SluiceError(ErrorKind.POLICY_BUDGET_EXCEEDED, "spent")
    assert status_of(budget, WireFormat.OPENAI_RESPONSES) == 429  # Codex stops on it at once
    assert status_of(budget, WireFormat.OPENAI_CHAT) == 402
    body = orjson.loads(error_body(budget, WireFormat.OPENAI_RESPONSES, 429, "req_1"))
    assert body["error"]["code"] == body["error"]["type"] == "insufficient_quota"
    event = stream_error_event(budget, WireFormat.OPENAI_CHAT)
    assert event.endswith(openai_chat.DONE) and b'"code":"budget_exceeded"' in event


def test_converse_in_stream_error_is_an_exception_frame() -> None:
    frames = FrameDecoder().feed(record_of(WireFormat.BEDROCK_CONVERSE).error_event(503, "busy", None))
    assert [(f.message_type, f.event_type) for f in frames] == [("exception", "serviceUnavailableException")]


def test_a_chat_stream_asks_for_usage_and_hides_it_only_when_the_caller_did_not() -> None:
    prepare = record_of(WireFormat.OPENAI_CHAT).prepare_stream
    doc: dict[str, object] = {"stream": True, "stream_options": {"x": 1}}
    assert prepare(doc, True) == (True, True) and doc["stream_options"] == {"x": 1, "include_usage": True}
    asked = {"stream_options": {"include_usage": True}}
    assert prepare(asked, True) == (False, False)
    assert prepare({}, False) == (False, False)


def test_a_responses_body_loses_chats_include_usage_only() -> None:
    prepare = record_of(WireFormat.OPENAI_RESPONSES).prepare_stream
    doc: dict[str, object] = {"stream_options": {"include_usage": True, "include_obfuscation": False}}
    assert prepare(doc, True) == (True, False) and doc["stream_options"] == {"include_obfuscation": False}
    bare: dict[str, object] = {"stream_options": {"include_usage": True}}
    assert prepare(bare, False).changed and "stream_options" not in bare
    for wire in (WireFormat.ANTHROPIC_MESSAGES, WireFormat.GEMINI, WireFormat.BEDROCK_CONVERSE):
        untouched: dict[str, object] = {"stream_options": {"include_usage": True}}
        assert record_of(wire).prepare_stream(untouched, True) == (False, False) and untouched["stream_options"]


def _scan(chunks: list[bytes]) -> list[bytes]:
    """The SSE splitter's plain scan: the reference its one-pass fast path must agree with."""
    buf, out = b"", []
    for chunk in chunks:
        buf += chunk
        held = b""
        if buf.endswith(b"\r"):
            buf, held = buf[:-1], b"\r"
        buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = 0
        while (end := buf.find(b"\n\n", start)) >= 0:
            out.append(buf[start:end])
            start = end + 2
        buf = buf[start:] + held
    return out


def test_the_sse_splitter_fast_path_finds_the_blocks_the_scan_finds() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        data = b"".join(rng.choice((b"a", b"\n", b"\r", b":", b" ")) for _ in range(rng.randint(0, 24)))
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randint(0, 4))))
        chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        decoder = SSEDecoder()
        assert [b for c in chunks for b in decoder.feed_blocks(c)] == _scan(chunks), chunks
