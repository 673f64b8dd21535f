from __future__ import annotations

import orjson
import pytest

from sluice.core.types import Completion, ToolCall, Usage
from sluice.formats import anthropic_messages, openai_chat
from sluice.formats.sse import SSEDecoder


def _split_everywhere(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 7, 64, 10_000])
def test_sse_decoder_is_independent_of_chunk_boundaries(size: int) -> None:
    stream = b'event: a\ndata: {"x":1}\n\n: comment\n\nevent: b\r\ndata: line1\r\ndata: line2\r\n\r\n'
    decoder = SSEDecoder()
    events = [e for chunk in _split_everywhere(stream, size) for e in decoder.feed(chunk)]
    assert [(e.event, e.data) for e in events] == [("a", b'{"x":1}'), ("message", b""), ("b", b"line1\nline2")]


def _completion(**kw: object) -> Completion:
    base = {"id": "msg_1", "model": "m", "text": "hello world", "usage": Usage(10, 5, 3, 2)}
    base.update(kw)
    return Completion(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1, 13, 100_000])
def test_anthropic_stream_observer_collects_usage(size: int) -> None:
    stream = b"".join(anthropic_messages.render_stream(_completion()))
    obs = anthropic_messages.StreamObserver()
    out = b"".join(obs.feed(c) for c in _split_everywhere(stream, size))
    assert out == stream  # bytes pass unchanged
    assert obs.usage == Usage(10, 5, 3, 2)
    assert obs.completed


def test_anthropic_stream_shape_with_tool_call() -> None:
    c = _completion(tool_calls=[ToolCall("toolu_1", "search", '{"q":"x"}')], stop_reason="tool_use")
    events = [orjson.loads(e.split(b"data: ", 1)[1]) for e in anthropic_messages.render_stream(c)]
    types = [e["type"] for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    partial = "".join(
        e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta"
    )
    assert orjson.loads(partial) == {"q": "x"}


def test_openai_usage_splits_cached_tokens() -> None:
    body = orjson.dumps(
        {"usage": {"prompt_tokens": 100, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 40}}}
    )
    assert openai_chat.usage_from_response(body) == Usage(input_tokens=60, output_tokens=7, cache_read_tokens=40)


@pytest.mark.parametrize("size", [1, 50, 100_000])
def test_openai_observer_hides_only_the_usage_chunk_it_asked_for(size: int) -> None:
    stream = b"".join(openai_chat.render_stream(_completion(), include_usage=True))
    obs = openai_chat.StreamObserver(hide_usage_chunk=True)
    out = b"".join(obs.feed(c) for c in _split_everywhere(stream, size))
    assert obs.usage == Usage(input_tokens=10, output_tokens=5, cache_read_tokens=3)
    datas = [line for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert datas[-1] == b"data: [DONE]"
    assert all(orjson.loads(d[6:])["choices"] for d in datas[:-1])  # the usage-only chunk is gone
    assert len(datas) == len([x for x in stream.split(b"\n") if x.startswith(b"data: ")]) - 1


def test_openai_observer_passes_bytes_when_caller_asked_for_usage() -> None:
    stream = b"".join(openai_chat.render_stream(_completion(), include_usage=True))
    obs = openai_chat.StreamObserver()
    assert b"".join(obs.feed(c) for c in _split_everywhere(stream, 9)) == stream
    assert obs.usage.output_tokens == 5


def test_error_bodies_have_each_surface_shape() -> None:
    a = orjson.loads(anthropic_messages.error_body(403, "no", "req_1"))
    assert a == {"type": "error", "error": {"type": "permission_error", "message": "no"}, "request_id": "req_1"}
    o = orjson.loads(openai_chat.error_body(403, "no", "model_not_allowed"))
    assert o == {"error": {"message": "no", "type": "permission_denied", "param": None, "code": "model_not_allowed"}}
