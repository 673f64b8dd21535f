"""Properties of the codecs over generated canonical conversations, answers and streams.

The generators stay within what every format can express (no mid-conversation system message,
no URL images, one text per tool result, tool names on results only where the format has them),
so any difference after a round trip is a translation bug, not a documented loss. The few fields
a format carries elsewhere (Gemini's model and stream flag live in the URL) are compared apart.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.core.canonical import (
    BlockStart,
    BlockStop,
    ChatRequest,
    ChatResponse,
    Finish,
    Image,
    Message,
    Part,
    Reasoning,
    Start,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
    ToolResult,
)
from sluice.core.types import Usage, WireFormat
from sluice.formats.codecs import codec_for

WIRES = [WireFormat.ANTHROPIC_MESSAGES, WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES, WireFormat.GEMINI]
STRING_ARGS = [WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES]  # arguments travel as JSON text
THINKING = {  # formats whose own thinking blocks go back to them
    WireFormat.ANTHROPIC_MESSAGES: True,
    WireFormat.OPENAI_CHAT: False,
    WireFormat.OPENAI_RESPONSES: True,
    WireFormat.GEMINI: True,
}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=24)
names = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,15}", fullmatch=True)
scalars = st.one_of(st.integers(-(10**6), 10**6), st.booleans(), st.none(), texts)
arg_values = st.dictionaries(names, st.one_of(scalars, st.lists(scalars, max_size=3)), max_size=4)
usages = st.builds(
    Usage,
    input_tokens=st.integers(0, 10**6),
    output_tokens=st.integers(0, 10**5),
    cache_read_tokens=st.integers(0, 10**6),
)


@st.composite
def arguments(draw: st.DrawFn, *, spaced: bool = False) -> str:
    """The JSON text of an arguments object: compact (what object-based formats produce) or, for
    formats that carry the text itself, laid out any way a model might."""
    value = draw(arg_values)
    if not spaced:
        return orjson.dumps(value).decode()
    indent = draw(st.sampled_from([None, 0, 1, 2]))
    separators = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]))
    return json.dumps(value, indent=indent, separators=separators, ensure_ascii=draw(st.booleans()))


def images() -> st.SearchStrategy[Image]:
    data = st.binary(min_size=1, max_size=12).map(lambda b: base64.b64encode(b).decode())
    return st.builds(Image, media_type=st.sampled_from(["image/png", "image/jpeg"]), data=data)


@st.composite
def conversations(draw: st.DrawFn, *, thinking: str = "", spaced: bool = False) -> list[Message]:
    """user, then (assistant, user)* turns; tool calls are answered by the next user turn."""
    messages = [Message("user", [*draw(st.lists(st.builds(Text, texts), min_size=1, max_size=2))])]
    if draw(st.booleans()):
        messages[0].parts.append(draw(images()))
    for turn in range(draw(st.integers(0, 3))):
        parts: list[Part] = []
        if thinking and draw(st.booleans()):
            parts.append(Thinking(draw(texts), signature=draw(names), origin=thinking))
        parts += draw(st.lists(st.builds(Text, texts), max_size=2))
        has_text = any(isinstance(p, Text) for p in parts)
        n_calls = draw(st.integers(0 if has_text else 1, 3))
        calls = [ToolCall(f"call_{turn}_{k}", draw(names), draw(arguments(spaced=spaced))) for k in range(n_calls)]
        messages.append(Message("assistant", parts + calls))
        answer: list[Part] = [
            ToolResult(c.id, [Text(draw(texts.filter(lambda t: not t.lstrip().startswith("{"))))]) for c in calls
        ]
        answer += draw(st.lists(st.builds(Text, texts), min_size=0 if calls else 1, max_size=2))
        messages.append(Message("user", answer))
    return messages


@st.composite
def requests(draw: st.DrawFn, *, thinking: str = "", spaced: bool = False) -> ChatRequest:
    tools = [
        Tool(name, draw(st.one_of(st.just(""), texts)), {"type": "object", "properties": {"q": {"type": "string"}}})
        for name in draw(st.lists(names, max_size=3, unique=True))
    ]
    choice = None
    if tools and draw(st.booleans()):
        mode = draw(st.sampled_from(["auto", "none", "any", "tool"]))
        choice = ToolChoice(mode, name=tools[0].name if mode == "tool" else None)  # type: ignore[arg-type]
    return ChatRequest(
        model=draw(names),
        messages=draw(conversations(thinking=thinking, spaced=spaced)),
        system=draw(st.lists(st.builds(Text, texts), max_size=2)),
        tools=tools,
        tool_choice=choice,
        max_tokens=draw(st.integers(1, 200_000)),
        temperature=draw(st.one_of(st.none(), st.floats(0, 2))),
        top_p=draw(st.one_of(st.none(), st.floats(0, 1))),
        stream=draw(st.booleans()),
    )


@st.composite
def responses(draw: st.DrawFn, *, spaced: bool = False) -> ChatResponse:
    content: list[Part] = [Text(draw(texts))] if draw(st.booleans()) else []
    calls = [ToolCall(f"call_{k}", draw(names), draw(arguments(spaced=spaced))) for k in range(draw(st.integers(0, 3)))]
    content += calls or ([] if content else [Text(draw(texts))])
    stop = "tool_use" if calls else draw(st.sampled_from(["end_turn", "max_tokens"]))
    return ChatResponse(draw(names), draw(names), content, stop, usage=draw(usages))


@st.composite
def streams(draw: st.DrawFn, *, spaced: bool = False) -> list[StreamEvent]:
    events: list[StreamEvent] = [Start(draw(names), draw(names))]
    previous = ""
    calls = 0
    for index in range(draw(st.integers(1, 4))):
        # two text blocks in a row are one block in formats without block boundaries
        kind = "tool_call" if previous == "text" else draw(st.sampled_from(["text", "tool_call"]))
        if kind == "text":
            events.append(BlockStart(index, "text"))
            events += [TextDelta(index, t) for t in draw(st.lists(texts, min_size=1, max_size=3))]
        else:
            calls += 1
            events.append(BlockStart(index, "tool_call", call_id=f"call_{index}", name=draw(names)))
            text = draw(arguments(spaced=spaced))
            cuts = sorted(draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=4)))
            pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
            events += [ToolArgsDelta(index, p) for p in pieces if p]
        events.append(BlockStop(index))
        previous = kind
    stop = "tool_use" if calls else draw(st.sampled_from(["end_turn", "max_tokens"]))
    events.append(Finish(stop, draw(usages)))  # type: ignore[arg-type]
    return events


@st.composite
def options(draw: st.DrawFn, wire: WireFormat) -> dict[str, Any]:
    """The request options each format carries in its own way (reasoning, output format, ...)."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    json_object = {"type": "json_object"}
    levels = st.sampled_from(["low", "medium", "high"])
    if wire == WireFormat.ANTHROPIC_MESSAGES:
        common = {
            "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}},
            "user": draw(texts),
            "stop": draw(st.lists(texts, max_size=3)),
        }
        if draw(st.booleans()):
            return common | {"top_k": draw(st.integers(1, 500))}
        # Thinking, as Anthropic takes it: a budget below max_tokens, no top_k, temperature 1 or unset,
        # top_p within [0.95, 1], no forced tool use.
        budget = draw(st.integers(1024, 64000))
        return common | {
            "reasoning": Reasoning(draw(st.one_of(st.none(), levels)), budget),
            "max_tokens": budget + draw(st.integers(1024, 64000)),
            "temperature": draw(st.sampled_from([None, 1])),
            "top_p": draw(st.one_of(st.none(), st.floats(0.95, 1))),
            "tool_choice": None,
        }
    if wire == WireFormat.GEMINI:
        named = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
        return {
            "reasoning": Reasoning(budget_tokens=draw(st.integers(1, 32768)), summary=draw(st.booleans())),
            "response_format": draw(st.sampled_from([named, json_object])),
            "top_k": draw(st.integers(1, 500)),
            "stop": draw(st.lists(texts, max_size=3)),
        }
    named = {
        "type": "json_schema",
        "json_schema": {"name": draw(names), "schema": schema, "strict": draw(st.booleans())},
    }
    fields = {"response_format": draw(st.sampled_from([named, json_object])), "user": draw(texts)}
    if wire == WireFormat.OPENAI_CHAT:
        effort = draw(st.sampled_from(["minimal", "low", "medium", "high"]))
        return fields | {"reasoning": Reasoning(effort), "stop": draw(st.lists(texts, max_size=3))}
    return fields | {"reasoning": Reasoning(draw(levels), summary=draw(st.booleans()))}


# --- comparison helpers ------------------------------------------------------------------------


def through(wire: WireFormat, request: ChatRequest) -> ChatRequest:
    codec = codec_for(wire)
    out = codec.decode_request(copy.deepcopy(codec.encode_request(request)), model=request.model)
    if wire == WireFormat.GEMINI:
        out.stream = request.stream  # the stream flag lives in Gemini's URL, not its body
    return out


def without(request: ChatRequest, keep: str) -> ChatRequest:
    """What a format is expected to return: thinking only of its own, and tool results compared
    by call id (only Gemini carries the function name as well)."""
    r = copy.deepcopy(request)
    for m in r.messages:
        m.parts = [p for p in m.parts if not isinstance(p, Thinking) or p.origin == keep]
        for p in m.parts:
            if isinstance(p, ToolResult):
                p.name = None
    r.messages = [m for m in r.messages if m.parts]
    return r


def merged(events: list[StreamEvent]) -> list[StreamEvent]:
    """Streams compared by content: adjacent deltas of one block joined."""
    out: list[StreamEvent] = []
    for e in events:
        last = out[-1] if out else None
        if isinstance(e, TextDelta) and isinstance(last, TextDelta) and last.index == e.index:
            out[-1] = TextDelta(e.index, last.text + e.text)
        elif isinstance(e, ToolArgsDelta) and isinstance(last, ToolArgsDelta) and last.index == e.index:
            out[-1] = ToolArgsDelta(e.index, last.json + e.json)
        elif isinstance(e, ThinkingDelta) and isinstance(last, ThinkingDelta) and last.index == e.index:
            out[-1] = ThinkingDelta(e.index, last.text + e.text, last.signature + e.signature)
        else:
            out.append(e)
    return out


def restream(wire: WireFormat, events: list[StreamEvent], cuts: list[int]) -> list[StreamEvent]:
    codec = codec_for(wire)
    encoder = codec.stream_encoder(ChatRequest(model="m", messages=[]))
    data = b"".join(encoder.encode(e) for e in events) + encoder.close()
    bounds = sorted({c % (len(data) + 1) for c in cuts})
    decoder = codec.stream_decoder()
    out: list[StreamEvent] = []
    for a, b in zip([0, *bounds], [*bounds, len(data)], strict=True):
        out += decoder.feed(data[a:b])
    return out + decoder.close()


# --- properties --------------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_request_round_trip_per_format(data: st.DataObject) -> None:
    for wire in WIRES:
        request = data.draw(requests(thinking=wire.value if THINKING[wire] else "", spaced=wire in STRING_ARGS))
        assert without(through(wire, request), wire.value) == without(request, wire.value), wire


@SETTINGS
@given(st.data())
def test_request_options_round_trip_per_format(data: st.DataObject) -> None:
    for wire in WIRES:
        request = replace(data.draw(requests()), **data.draw(options(wire)))
        assert without(through(wire, request), wire.value) == without(request, wire.value), wire


@SETTINGS
@given(st.data(), st.sampled_from(WIRES), st.sampled_from(WIRES))
def test_request_across_formats_keeps_content(data: st.DataObject, a: WireFormat, b: WireFormat) -> None:
    request = data.draw(requests(thinking=a.value if THINKING[a] else ""))
    via_a = through(a, request)
    via_b = through(b, via_a)
    assert without(via_b, b.value) == without(request, b.value)
    if a != b:
        assert not any(isinstance(p, Thinking) for m in via_b.messages for p in m.parts)


@SETTINGS
@given(st.data())
def test_response_round_trip_per_format(data: st.DataObject) -> None:
    for wire in WIRES:
        response = data.draw(responses(spaced=wire in STRING_ARGS))
        codec = codec_for(wire)
        assert codec.decode_response(copy.deepcopy(codec.encode_response(response))) == response, wire


@SETTINGS
@given(responses(), st.sampled_from(WIRES), st.sampled_from(WIRES))
def test_response_across_formats_keeps_content(response: ChatResponse, a: WireFormat, b: WireFormat) -> None:
    ca, cb = codec_for(a), codec_for(b)
    assert cb.decode_response(cb.encode_response(ca.decode_response(ca.encode_response(response)))) == response


@SETTINGS
@given(st.data(), st.lists(st.integers(0, 1 << 16), max_size=12))
def test_stream_round_trip_at_any_chunk_split(data: st.DataObject, cuts: list[int]) -> None:
    for wire in WIRES:
        events = data.draw(streams(spaced=wire in STRING_ARGS))
        got = restream(wire, events, cuts)
        if wire == WireFormat.GEMINI:  # arguments arrive whole
            assert merged(got) == merged(events), wire
        else:
            assert got == events, wire


@SETTINGS
@given(streams(), st.sampled_from(WIRES), st.sampled_from(WIRES), st.lists(st.integers(0, 1 << 16), max_size=6))
def test_stream_across_formats_keeps_content(
    events: list[StreamEvent], a: WireFormat, b: WireFormat, cuts: list[int]
) -> None:
    assert merged(restream(b, restream(a, events, cuts), cuts)) == merged(events)


@SETTINGS
@given(st.data(), st.sampled_from([*STRING_ARGS, WireFormat.ANTHROPIC_MESSAGES]), st.lists(st.integers(0, 1 << 16)))
def test_streamed_tool_arguments_keep_their_bytes(data: st.DataObject, wire: WireFormat, cuts: list[int]) -> None:
    events = data.draw(streams(spaced=True))

    def args(stream: list[StreamEvent]) -> list[str]:
        return [e.json for e in merged(stream) if isinstance(e, ToolArgsDelta)]

    assert args(restream(wire, events, cuts)) == args(events)


@SETTINGS
@given(st.data(), st.sampled_from(STRING_ARGS), st.sampled_from(STRING_ARGS))
def test_tool_arguments_keep_their_bytes_between_text_formats(
    data: st.DataObject, a: WireFormat, b: WireFormat
) -> None:
    request = data.draw(requests(spaced=True))
    out = through(b, through(a, request))
    calls = [p for m in request.messages for p in m.parts if isinstance(p, ToolCall)]
    assert [p for m in out.messages for p in m.parts if isinstance(p, ToolCall)] == calls
    response = data.draw(responses(spaced=True))
    ca, cb = codec_for(a), codec_for(b)
    decoded = cb.decode_response(cb.encode_response(ca.decode_response(ca.encode_response(response))))
    assert [p.arguments_json for p in decoded.content if isinstance(p, ToolCall)] == [
        p.arguments_json for p in response.content if isinstance(p, ToolCall)
    ]


def test_registry_has_a_codec_per_translated_format_only() -> None:
    assert [codec_for(w).wire for w in WIRES] == WIRES
    assert codec_for(WireFormat.BEDROCK_CONVERSE).wire is WireFormat.BEDROCK_CONVERSE  # outbound only
    with pytest.raises(KeyError):
        codec_for(WireFormat.OPENAI_EMBEDDINGS)
