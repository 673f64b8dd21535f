"""The translation bridge's own decisions: which format a request goes out in, when the body passes untouched,
token counts in each caller's shape, the local estimate, and upstream failures as error kinds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from sluice.core.canonical import ChatRequest, Failure, Image, Message, Text, Tool, ToolCall, ToolResult
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.providers.anthropic import AnthropicProvider
from sluice.providers.fake import FakeProvider
from sluice.providers.gemini import GeminiProvider
from sluice.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from sluice.translation import (
    Translation,
    count_body,
    kind_of,
    local_count,
    reaches,
    request_wire,
    target_of,
)
from sluice.upstream.client import Timeouts, UpstreamClient

A, CHAT, RESP, GEM = (
    WireFormat.ANTHROPIC_MESSAGES,
    WireFormat.OPENAI_CHAT,
    WireFormat.OPENAI_RESPONSES,
    WireFormat.GEMINI,
)
GEN, COUNT = Operation.GENERATE, Operation.COUNT_TOKENS


def provider(cls: type[Any]) -> Any:
    return cls("p", "http://127.0.0.1:9", [], UpstreamClient(), Timeouts())


def test_same_format_passes_untouched_and_others_are_translated() -> None:
    anthropic, openai = provider(AnthropicProvider), provider(OpenAIProvider)
    assert target_of(anthropic, "claude", A, GEN, {}) == (A, False)  # the hot path: no translation
    assert target_of(openai, "gpt", A, GEN, {}) == (CHAT, True)
    assert target_of(openai, "gpt", A, COUNT, {}) == (RESP, True)  # OpenAI counts on the Responses API
    assert target_of(provider(GeminiProvider), "gemini", CHAT, GEN, {}) == (GEM, True)
    assert target_of(provider(OpenAICompatibleProvider), "llama", A, COUNT, {}) == (None, True)  # estimated
    assert target_of(FakeProvider(), "echo", GEM, GEN, {}) == (GEM, False)
    assert not reaches(anthropic, "claude", WireFormat.OPENAI_EMBEDDINGS, Operation.EMBED, {})


def test_cursor_responses_bodies_on_chat_completions() -> None:
    cursor = {"model": "gpt-5", "input": [{"role": "user", "content": "hi"}]}
    assert request_wire(CHAT, cursor) is RESP
    assert request_wire(CHAT, {"messages": [], "input": "x"}) is CHAT  # a Chat body that happens to say input
    assert request_wire(RESP, cursor) is RESP
    # An OpenAI provider takes the body on its Responses endpoint; only the answer is translated.
    assert target_of(provider(OpenAIProvider), "gpt-5", CHAT, GEN, cursor) == (RESP, True)
    assert target_of(provider(AnthropicProvider), "claude", CHAT, GEN, cursor) == (A, True)


def test_count_bodies_in_each_callers_shape() -> None:
    assert orjson.loads(count_body(A, 7)) == {"input_tokens": 7}
    assert orjson.loads(count_body(RESP, 7)) == {"object": "response.input_tokens", "input_tokens": 7}
    assert orjson.loads(count_body(GEM, 7)) == {"totalTokens": 7}


def test_local_estimate_counts_every_text_the_model_reads() -> None:
    request = ChatRequest(
        model="m",
        system=[Text("s" * 40)],
        messages=[
            Message("user", [Text("u" * 40), Image("image/png", data="AAAA")]),
            Message("assistant", [ToolCall("c1", "look", '{"q":"' + "x" * 30 + '"}')]),
            Message("user", [ToolResult("c1", [Text("r" * 40)])]),
        ],
        tools=[Tool("look", "d" * 10, {"type": "object"})],
    )
    chars = 40 + 40 + len("look") + 38 + 40 + len("look") + 10 + len('{"type": "object"}')
    assert local_count(request) == -(-chars // 4) + 1600
    assert local_count(ChatRequest(model="m", messages=[])) == 1


def test_upstream_statuses_keep_their_retry_and_fallback_meaning() -> None:
    assert kind_of(429) is ErrorKind.PROVIDER_RATE_LIMITED
    assert kind_of(529) is kind_of(503) is ErrorKind.PROVIDER_OVERLOADED
    assert kind_of(504) is ErrorKind.PROVIDER_TIMEOUT
    assert kind_of(500) is kind_of(400) is ErrorKind.PROVIDER_ERROR


async def test_an_in_stream_failure_becomes_a_sluice_error() -> None:
    translation = Translation(A, CHAT, GEN, ChatRequest(model="gpt", messages=[Message("user", [Text("hi")])]))
    error = b'data: {"error":{"message":"overloaded","type":"server_error","code":null}}\n\n'

    async def upstream() -> AsyncIterator[bytes]:
        yield error

    from sluice.formats.codecs import codec_for

    encoder = codec_for(A).stream_encoder(translation.request)
    with pytest.raises(SluiceError) as failed:
        async for _ in translation.stream(upstream(), encoder):
            pass
    assert failed.value.kind.fault == "provider" and "overloaded" in failed.value.message


def test_an_unreadable_error_body_still_becomes_a_failure() -> None:
    translation = Translation(A, CHAT, GEN, ChatRequest(model="gpt", messages=[]))
    failure = translation.failure(502, b"<html>bad gateway</html>")
    assert isinstance(failure, Failure) and failure.status == 502


def test_openai_answers_get_a_real_creation_time() -> None:
    import time

    from tests.fakes.upstream import FakeUpstream

    fake = FakeUpstream()
    reply = fake.anthropic_reply({"messages": [{"role": "user", "content": "hi"}]}, b"x" * 40, "claude")
    request = ChatRequest(model="claude", messages=[Message("user", [Text("hi")])])
    for answer, key in ((CHAT, "created"), (RESP, "created_at")):
        doc = orjson.loads(Translation(answer, A, GEN, request).response(fake.anthropic.render_message(reply)))
        assert abs(doc[key] - time.time()) < 5  # codecs have no clock; the bridge stamps it


CONVERSE = WireFormat.BEDROCK_CONVERSE


def test_a_converse_answer_gets_an_id_and_the_routed_model() -> None:
    # Converse answers name neither: the caller still gets an id (from the request id) and the model.
    converse = {
        "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
    }
    request = ChatRequest(model="alias", messages=[Message("user", [Text("hi")])])
    for answer, key, expected in (
        (A, "model", "msg_req_1"),
        (CHAT, "model", "chatcmpl-req_1"),
        (RESP, "model", "resp_req_1"),
    ):
        body = Translation(answer, CONVERSE, GEN, request).response(orjson.dumps(converse), "req_1", "mistral.large")
        doc = orjson.loads(body)
        assert doc["id"] == expected and doc[key] == "mistral.large"
    gemini = orjson.loads(Translation(GEM, CONVERSE, GEN, request).response(orjson.dumps(converse), "req_1", "m"))
    assert gemini["responseId"] == "req_1" and gemini["modelVersion"] == "m"


async def test_a_converse_stream_gets_an_id_and_the_routed_model() -> None:
    from sluice.formats.codecs import codec_for
    from tests.fakes import aws_wire

    frames = [
        aws_wire.event("messageStart", {"role": "assistant"}),
        aws_wire.event("contentBlockDelta", {"delta": {"text": "hi"}, "contentBlockIndex": 0}),
        aws_wire.event("contentBlockStop", {"contentBlockIndex": 0}),
        aws_wire.event("messageStop", {"stopReason": "end_turn"}),
        aws_wire.event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}, "metrics": {}}),
    ]

    async def upstream() -> AsyncIterator[bytes]:
        yield b"".join(frames)

    translation = Translation(A, CONVERSE, GEN, ChatRequest(model="alias", messages=[], stream=True))
    encoder = codec_for(A).stream_encoder(translation.request)
    out = b"".join([chunk async for chunk in translation.stream(upstream(), encoder, "req_2", "mistral.large")])
    start = orjson.loads(out.split(b"data: ", 1)[1].split(b"\n", 1)[0])
    assert start["message"]["id"] == "msg_req_2" and start["message"]["model"] == "mistral.large"
