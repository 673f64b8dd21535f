"""The fake provider writes its answers the one way answers are written in every format:
canonical types through the format's codec. So each answer must read back through the same
codec, and meter through the one stream observer, in every format it speaks."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from sluice.core.canonical import ChatRequest, Finish, Message, Text, TextDelta, Tool, ToolCall
from sluice.core.types import Operation, WireFormat
from sluice.formats.codecs import codec_for
from sluice.metering import stream_observer, usage_of
from sluice.providers.base import ProviderCall, ProviderReply
from sluice.providers.fake import FakeProvider

GENERATING = (
    WireFormat.ANTHROPIC_MESSAGES,
    WireFormat.OPENAI_CHAT,
    WireFormat.OPENAI_RESPONSES,
    WireFormat.GEMINI,
    WireFormat.BEDROCK_CONVERSE,
)


def _send(wire: WireFormat, model: str, *, stream: bool, max_tokens: int | None = 1000) -> ProviderReply:
    tool = Tool("lookup", "finds things", {"type": "object", "properties": {"query": {"type": "string"}}})
    request = ChatRequest(model, [Message("user", [Text("hi there")])], tools=[tool], max_tokens=max_tokens)
    request.stream = stream
    doc = codec_for(wire).encode_request(request)
    body = orjson.dumps(doc)
    call = ProviderCall(wire, Operation.GENERATE, model, body, doc, {}, "", stream, None)
    return asyncio.run(FakeProvider().send(call))


@pytest.mark.parametrize("wire", GENERATING)
def test_whole_answers_read_back_through_the_formats_codec(wire: WireFormat) -> None:
    reply = _send(wire, "fake/tool", stream=False)
    assert reply.body is not None
    answer = codec_for(wire).decode_response(orjson.loads(reply.body))
    texts = [p.text for p in answer.content if isinstance(p, Text)]
    calls = [p for p in answer.content if isinstance(p, ToolCall)]
    assert texts == ["echo: hi there"]
    assert [(c.name, orjson.loads(c.arguments_json)) for c in calls] == [("lookup", {"query": "sluice"})]
    assert answer.stop_reason == "tool_use"
    usage = usage_of(wire, reply.body)
    assert usage.reported and usage.input_tokens > 0 and usage.output_tokens > 0


async def _collect(reply: ProviderReply) -> list[bytes]:
    assert reply.chunks is not None
    return [chunk async for chunk in reply.chunks]


@pytest.mark.parametrize("wire", GENERATING)
def test_streamed_answers_meter_and_decode(wire: WireFormat) -> None:
    reply = _send(wire, "fake/long", stream=True)
    chunks = asyncio.run(_collect(reply))
    observer = stream_observer(wire, False)
    observer.count_output = True
    for chunk in chunks:
        assert observer.feed(chunk) == chunk
    assert observer.completed and observer.usage.reported and observer.error is None
    assert observer.output_chars >= len("lorem ipsum " * 833)
    decoder = codec_for(wire).stream_decoder()
    events = [e for chunk in chunks for e in decoder.feed(chunk)] + decoder.close()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "lorem ipsum " * 833
    assert isinstance(events[-1], Finish) and events[-1].usage.output_tokens == observer.usage.output_tokens


@pytest.mark.parametrize("wire", GENERATING)
def test_the_output_limit_is_read_in_each_formats_own_spelling(wire: WireFormat) -> None:
    reply = _send(wire, "fake/echo", stream=False, max_tokens=2)
    assert reply.body is not None
    answer = codec_for(wire).decode_response(orjson.loads(reply.body))
    assert answer.stop_reason == "max_tokens" and answer.usage.output_tokens == 2
