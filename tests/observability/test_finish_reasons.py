"""Why an answer ended (`gen_ai.response.finish_reasons`), read once per wire format from whole
answers and from streams as each provider sends them, and carried to the answering attempt.

Field names and values from the providers' references: Anthropic `stop_reason` (in the answer,
and in a stream's `message_delta`); OpenAI Chat `choices[].finish_reason` (a stream's last chunk
per choice); OpenAI Responses `status` and `incomplete_details.reason` ("max_output_tokens",
"content_filter"); Gemini `candidates[].finishReason` ("STOP", "MAX_TOKENS", "SAFETY"); Bedrock
Converse `stopReason` (in the answer, and in a stream's `messageStop` event)."""

from __future__ import annotations

import orjson
import pytest

from sluice.core.canonical import BlockStart, BlockStop, ChatRequest, Finish, Start, StopReason, StreamEvent, TextDelta
from sluice.core.context import Attempt, RequestRecord
from sluice.core.types import Operation, Usage, WireFormat
from sluice.engine.context import RequestContext
from sluice.formats.codecs import codec_for
from sluice.formats.sse import encode
from sluice.metering import stream_observer, usage_of

W = WireFormat


def streamed(wire: WireFormat, stop: StopReason) -> tuple[str, ...]:
    """The finish reasons the observer reads from a stream made by the wire's own encoder."""
    encoder = codec_for(wire).stream_encoder(ChatRequest(model="m", messages=[], stream=True))
    events: list[StreamEvent] = [Start("id", "m", Usage(input_tokens=3)), BlockStart(0, "text"), TextDelta(0, "hi")]
    events += [BlockStop(0), Finish(stop, Usage(input_tokens=3, output_tokens=2))]
    observer = stream_observer(wire, wire is W.OPENAI_CHAT)
    for chunk in [encoder.encode(e) for e in events] + [encoder.close()]:
        observer.feed(chunk)
    assert observer.completed
    return observer.usage.finish_reasons


@pytest.mark.parametrize(
    ("wire", "stop", "expected"),
    [
        (W.ANTHROPIC_MESSAGES, "end_turn", ("end_turn",)),
        (W.ANTHROPIC_MESSAGES, "max_tokens", ("max_tokens",)),
        (W.OPENAI_CHAT, "end_turn", ("stop",)),
        (W.OPENAI_CHAT, "tool_use", ("tool_calls",)),
        (W.OPENAI_CHAT, "max_tokens", ("length",)),
        (W.OPENAI_RESPONSES, "end_turn", ("completed",)),
        (W.OPENAI_RESPONSES, "max_tokens", ("max_output_tokens",)),
        (W.GEMINI, "end_turn", ("STOP",)),
        (W.GEMINI, "max_tokens", ("MAX_TOKENS",)),
        (W.BEDROCK_CONVERSE, "end_turn", ("end_turn",)),
        (W.BEDROCK_CONVERSE, "max_tokens", ("max_tokens",)),
    ],
)
def test_streams_say_why_they_ended(wire: WireFormat, stop: StopReason, expected: tuple[str, ...]) -> None:
    assert streamed(wire, stop) == expected


@pytest.mark.parametrize(
    ("wire", "answer", "expected"),
    [
        (
            W.ANTHROPIC_MESSAGES,
            {"type": "message", "stop_reason": "refusal", "usage": {"input_tokens": 1}},
            ("refusal",),
        ),
        (
            W.OPENAI_CHAT,
            {"choices": [{"index": 0, "finish_reason": "stop"}, {"index": 1, "finish_reason": "length"}], "usage": {}},
            ("stop", "length"),
        ),
        (
            W.OPENAI_RESPONSES,
            {"status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "usage": {}},
            ("content_filter",),
        ),
        (W.OPENAI_RESPONSES, {"status": "completed", "incomplete_details": None, "usage": {}}, ("completed",)),
        (W.GEMINI, {"candidates": [{"finishReason": "SAFETY"}], "usageMetadata": {}}, ("SAFETY",)),
        (
            W.BEDROCK_CONVERSE,
            {"stopReason": "guardrail_intervened", "usage": {"inputTokens": 1}},
            ("guardrail_intervened",),
        ),
    ],
)
def test_whole_answers_say_why_they_ended(
    wire: WireFormat, answer: dict[str, object], expected: tuple[str, ...]
) -> None:
    assert usage_of(wire, orjson.dumps(answer)).finish_reasons == expected


@pytest.mark.parametrize("hostile", [None, 7, ["stop"], {"x": 1}, ""])
def test_a_reason_that_is_not_text_is_no_reason(hostile: object) -> None:
    answer = {"stop_reason": hostile, "usage": {"input_tokens": 1}}
    assert usage_of(W.ANTHROPIC_MESSAGES, orjson.dumps(answer)).finish_reasons == ()
    chat = {"choices": [{"finish_reason": hostile}], "usage": {}}
    assert usage_of(W.OPENAI_CHAT, orjson.dumps(chat)).finish_reasons == ()


def test_a_long_reason_is_cut() -> None:
    answer = {"stop_reason": "x" * 10_000, "usage": {"input_tokens": 1}}
    assert usage_of(W.ANTHROPIC_MESSAGES, orjson.dumps(answer)).finish_reasons == ("x" * 64,)


def test_chat_chunks_without_a_reason_are_not_parsed_for_one() -> None:
    observer = stream_observer(W.OPENAI_CHAT, False)
    chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    observer.feed(encode(orjson.dumps(chunk)))
    spaced = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'  # json.dumps spacing
    assert observer.usage.finish_reasons == ()
    observer.feed(spaced)
    assert observer.usage.finish_reasons == ("stop",)


def test_the_answering_attempt_carries_them_into_the_request_log() -> None:
    ctx = RequestContext(RequestRecord("req-1", W.OPENAI_CHAT, Operation.GENERATE, "/v1/chat/completions", "127.0.0.1"))
    ctx.attempts += [Attempt("m", outcome="upstream 529"), Attempt("m", outcome="ok")]
    ctx.answered(Usage(1, 2, finish_reasons=("length",)))
    assert [a.as_dict().get("finish_reasons") for a in ctx.attempts] == [None, ["length"]]
