"""The recorded Anthropic Messages and OpenAI Chat Completions wires of the fake upstream: fixtures turned into byte
templates once, filled per request (see ``tests.fakes.upstream`` for the behaviour)."""

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.wire_kit import (
    FIXTURES,
    SSE_DONE,
    JsonPath,
    Slots,
    Template,
    ToolUse,
    _marked,
    _without,
    chunk_chars,
    compact_json,
    jint,
    jstr,
    parse_sse,
    pretty_json,
    sse_data,
    sse_event,
)


@dataclass
class AnthropicReply:
    model: str
    id: str
    text_chunks: list[str] | None  # None: no text block
    tool: ToolUse | None
    stop_reason: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0
    ephemeral_1h_input_tokens: int = 0
    # A signed thinking block first (when the request enables extended thinking): (thinking text, signature).
    thinking: tuple[str, str] | None = None


@dataclass
class OpenAIReply:
    model: str
    id: str
    created: int
    content_chunks: list[str] | None  # None: content is null (tool call)
    tool: ToolUse | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    obfuscation: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------------------------
# Anthropic Messages wire format
# --------------------------------------------------------------------------------------------------------------------

_A_USAGE: Slots = {
    ("usage", "input_tokens"): "input_tokens",
    ("usage", "cache_creation_input_tokens"): "cache_creation_input_tokens",
    ("usage", "cache_read_input_tokens"): "cache_read_input_tokens",
    ("usage", "cache_creation", "ephemeral_5m_input_tokens"): "ephemeral_5m_input_tokens",
    ("usage", "cache_creation", "ephemeral_1h_input_tokens"): "ephemeral_1h_input_tokens",
    ("usage", "output_tokens"): "output_tokens",
}


def _find(events: Sequence[tuple[str | None, bytes]], name: str, **where: str) -> dict[str, Any]:
    for event, data in events:
        if event != name:
            continue
        doc = json.loads(data)
        block = doc.get("content_block") or doc.get("delta") or {}
        if all(block.get(k) == v for k, v in where.items()):
            return dict(doc)
    raise LookupError(f"no {name} {where} event in the fixture")


def _raw(events: Sequence[tuple[str | None, bytes]], name: str) -> bytes:
    for event, data in events:
        if event == name:
            return data
    raise LookupError(f"no {name} event in the fixture")


class AnthropicWire:
    """Templates for the Anthropic Messages API, built from ``tests/fixtures/anthropic``."""

    def __init__(self, root: Path = FIXTURES / "anthropic") -> None:
        self.root = root
        message = json.loads((root / "message.json").read_bytes())
        tool_message = json.loads((root / "message_tool_use.json").read_bytes())
        text = parse_sse((root / "message_stream.sse").read_bytes())
        tools = parse_sse((root / "message_tool_use_stream.sse").read_bytes())

        self.message = Template(
            compact_json(
                _marked(
                    message,
                    {
                        ("model",): "model",
                        ("id",): "id",
                        ("content",): "content",
                        ("stop_reason",): "stop_reason",
                        **_A_USAGE,
                    },
                )
            )
        )
        self.text_block = Template(compact_json(_marked(message["content"][0], {("text",): "text"})))
        tool_block = next(b for b in tool_message["content"] if b["type"] == "tool_use")
        self.tool_block = Template(
            compact_json(
                _marked(
                    tool_block,
                    {
                        ("id",): "tool_id",
                        ("name",): "tool_name",
                        ("input",): "tool_input",
                    },
                )
            )
        )

        start = _find(text, "message_start")
        start_usage: Slots = {("message", *path): name for path, name in _A_USAGE.items() if name != "output_tokens"}
        self.message_start = Template(
            sse_event(
                "message_start",
                compact_json(
                    _marked(
                        start,
                        {
                            ("message", "model"): "model",
                            ("message", "id"): "id",
                            **start_usage,
                        },
                    )
                ),
            )
        )
        self.text_start = Template(
            sse_event(
                "content_block_start",
                compact_json(_marked(_find(text, "content_block_start", type="text"), {("index",): "index"})),
            )
        )
        self.ping = sse_event("ping", _raw(text, "ping"))
        self.text_delta = Template(
            sse_event(
                "content_block_delta",
                compact_json(
                    _marked(
                        _find(text, "content_block_delta", type="text_delta"),
                        {("index",): "index", ("delta", "text"): "text"},
                    )
                ),
            )
        )
        self.block_stop = Template(
            sse_event(
                "content_block_stop", compact_json(_marked(_find(text, "content_block_stop"), {("index",): "index"}))
            )
        )
        self.tool_start = Template(
            sse_event(
                "content_block_start",
                compact_json(
                    _marked(
                        _find(tools, "content_block_start", type="tool_use"),
                        {
                            ("index",): "index",
                            ("content_block", "id"): "tool_id",
                            ("content_block", "name"): "tool_name",
                        },
                    )
                ),
            )
        )
        self.json_delta = Template(
            sse_event(
                "content_block_delta",
                compact_json(
                    _marked(
                        _find(tools, "content_block_delta", type="input_json_delta"),
                        {("index",): "index", ("delta", "partial_json"): "partial_json"},
                    )
                ),
            )
        )
        delta_usage: Slots = {path: name for path, name in _A_USAGE.items() if len(path) == 2}
        self.message_delta = Template(
            sse_event(
                "message_delta",
                compact_json(
                    _marked(_find(text, "message_delta"), {("delta", "stop_reason"): "stop_reason", **delta_usage})
                ),
            )
        )
        self.message_stop = sse_event("message_stop", _raw(text, "message_stop"))

        self.count_tokens = Template(
            compact_json(
                _marked(json.loads((root / "count_tokens.json").read_bytes()), {("input_tokens",): "input_tokens"})
            )
        )
        self.errors: dict[str, dict[str, Any]] = {
            p.stem: json.loads(p.read_bytes()) for p in sorted(root.glob("error_*.json"))
        }
        self.stream_error = (root / "error_stream_overloaded.sse").read_bytes()
        self.models = (root / "models.json").read_bytes()
        cache = message["usage"]
        self.fixture_cache = (
            cache["cache_creation_input_tokens"],
            cache["cache_read_input_tokens"],
            cache["cache_creation"]["ephemeral_5m_input_tokens"],
            cache["cache_creation"]["ephemeral_1h_input_tokens"],
        )

    # -- rendering ---------------------------------------------------------------------------------------------------

    def _values(self, reply: AnthropicReply) -> dict[str, bytes]:
        return {
            "model": jstr(reply.model),
            "id": jstr(reply.id),
            "stop_reason": jstr(reply.stop_reason),
            "input_tokens": jint(reply.input_tokens),
            "output_tokens": jint(reply.output_tokens),
            "cache_creation_input_tokens": jint(reply.cache_creation_input_tokens),
            "cache_read_input_tokens": jint(reply.cache_read_input_tokens),
            "ephemeral_5m_input_tokens": jint(reply.ephemeral_5m_input_tokens),
            "ephemeral_1h_input_tokens": jint(reply.ephemeral_1h_input_tokens),
        }

    def render_message(self, reply: AnthropicReply) -> bytes:
        blocks = []
        if reply.thinking is not None:
            text, signature = reply.thinking
            blocks.append(compact_json({"type": "thinking", "thinking": text, "signature": signature}))
        if reply.text_chunks is not None:
            blocks.append(self.text_block.render({"text": jstr("".join(reply.text_chunks))}))
        if reply.tool is not None:
            blocks.append(
                self.tool_block.render(
                    {
                        "tool_id": jstr(reply.tool.id),
                        "tool_name": jstr(reply.tool.name),
                        "tool_input": compact_json(reply.tool.input),
                    }
                )
            )
        values = self._values(reply)
        values["content"] = b"[" + b",".join(blocks) + b"]"
        return self.message.render(values)

    def render_stream(self, reply: AnthropicReply) -> list[bytes]:
        """The SSE events of a streamed message, one ``bytes`` per event."""
        values = self._values(reply)
        events = [self.message_start.render(values)]
        index = 0
        if reply.thinking is not None:
            # The documented shape of a streamed thinking block: content_block_start with an empty thinking block,
            # thinking_delta events, then one signature_delta before content_block_stop (extended thinking,
            # "Streaming thinking", https://platform.claude.com/docs/en/build-with-claude/extended-thinking).
            text, signature = reply.thinking
            start = {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}
            start["content_block"]["signature"] = ""
            events.append(sse_event("content_block_start", compact_json(start)))
            events.append(self.ping)
            for piece in chunk_chars(text, 24):
                delta = {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": piece},
                }
                events.append(sse_event("content_block_delta", compact_json(delta)))
            signed = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": signature},
            }
            events.append(sse_event("content_block_delta", compact_json(signed)))
            events.append(self.block_stop.render({"index": jint(0)}))
            index = 1
        if reply.text_chunks is not None:
            i = jint(index)
            events.append(self.text_start.render({"index": i}))
            if index == 0:
                events.append(self.ping)
            events.extend(self.text_delta.render({"index": i, "text": jstr(t)}) for t in reply.text_chunks)
            events.append(self.block_stop.render({"index": i}))
            index += 1
        if reply.tool is not None:
            i = jint(index)
            events.append(
                self.tool_start.render({"index": i, "tool_id": jstr(reply.tool.id), "tool_name": jstr(reply.tool.name)})
            )
            if index == 0:
                events.append(self.ping)
            chunks = reply.tool.chunks
            if chunks is None:
                chunks = ["", *chunk_chars(json.dumps(reply.tool.input, ensure_ascii=False), 16)]
            events.extend(self.json_delta.render({"index": i, "partial_json": jstr(c)}) for c in chunks)
            events.append(self.block_stop.render({"index": i}))
        events.append(self.message_delta.render(values))
        events.append(self.message_stop)
        return events

    def render_error(self, stem: str, request_id: str, message: str | None = None) -> bytes:
        """The error fixture ``stem`` with a fresh ``request_id`` (and ``message``, if given)."""
        doc = self.errors[stem]
        error = doc["error"] if message is None else {**doc["error"], "message": message}
        return compact_json({**doc, "error": error, "request_id": request_id})


# --------------------------------------------------------------------------------------------------------------------
# OpenAI Chat Completions / Embeddings wire format
# --------------------------------------------------------------------------------------------------------------------

_O_USAGE: Slots = {
    ("usage", "prompt_tokens"): "prompt_tokens",
    ("usage", "completion_tokens"): "completion_tokens",
    ("usage", "total_tokens"): "total_tokens",
    ("usage", "prompt_tokens_details", "cached_tokens"): "cached_tokens",
}
_O_HEAD: Slots = {("id",): "id", ("created",): "created", ("model",): "model"}


class _ChunkTemplates:
    """The chunk shapes of one recorded stream, with and without the ``usage`` key (include_usage on / off)."""

    def __init__(self, events: Sequence[tuple[str | None, bytes]], tool: bool) -> None:
        chunks = [json.loads(d) for _, d in events if d != b"[DONE]"]
        first = chunks[0]
        body = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["finish_reason"] is None]
        finish = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] is not None)
        usage = next(c for c in chunks if not c["choices"])
        head: Slots = {**_O_HEAD, ("obfuscation",): "obfuscation"}
        if tool:
            tc: JsonPath = ("choices", 0, "delta", "tool_calls", 0)
            first_slots: Slots = {**head, (*tc, "id"): "tool_id", (*tc, "function", "name"): "tool_name"}
            body_slots: Slots = {**head, (*tc, "function", "arguments"): "piece"}
        else:
            first_slots = head
            body_slots = {**head, ("choices", 0, "delta", "content"): "piece"}
        finish_slots: Slots = {**head, ("choices", 0, "finish_reason"): "finish_reason"}
        shapes = ((first, first_slots), (body[0], body_slots), (finish, finish_slots))

        def build(include_usage: bool) -> list[Template]:
            out = []
            for chunk, slots in shapes:
                doc = _marked(chunk, slots)
                out.append(Template(sse_data(compact_json(doc if include_usage else _without(doc, "usage")))))
            return out

        self.first, self.body, self.finish = build(True)
        self.first_nu, self.body_nu, self.finish_nu = build(False)
        self.usage = Template(sse_data(compact_json(_marked(usage, {**head, **_O_USAGE}))))


class OpenAIWire:
    """Templates for the OpenAI API, built from ``tests/fixtures/openai``."""

    def __init__(self, root: Path = FIXTURES / "openai") -> None:
        self.root = root
        completion = json.loads((root / "chat_completion.json").read_bytes())
        tool_completion = json.loads((root / "chat_completion_tool_calls.json").read_bytes())
        message = ("choices", 0, "message")
        self.completion = Template(
            pretty_json(
                _marked(
                    completion,
                    {
                        **_O_HEAD,
                        (*message, "content"): "content",
                        ("choices", 0, "finish_reason"): "finish_reason",
                        **_O_USAGE,
                    },
                )
            )
        )
        call = (*message, "tool_calls", 0)
        self.tool_completion = Template(
            pretty_json(
                _marked(
                    tool_completion,
                    {
                        **_O_HEAD,
                        (*call, "id"): "tool_id",
                        (*call, "function", "name"): "tool_name",
                        (*call, "function", "arguments"): "arguments",
                        ("choices", 0, "finish_reason"): "finish_reason",
                        **_O_USAGE,
                    },
                )
            )
        )
        text_events = parse_sse((root / "chat_completion_stream.sse").read_bytes())
        tool_events = parse_sse((root / "chat_completion_tool_calls_stream.sse").read_bytes())
        self.text_chunks = _ChunkTemplates(text_events, tool=False)
        self.tool_chunks = _ChunkTemplates(tool_events, tool=True)
        self.obfuscation = [json.loads(d)["obfuscation"] for _, d in text_events + tool_events if d != b"[DONE]"]
        self.embeddings = json.loads((root / "embeddings.json").read_bytes())
        self.models = (root / "models.json").read_bytes()
        self.errors: dict[str, bytes] = {p.stem: p.read_bytes() for p in sorted(root.glob("error_*.json"))}
        self.stream_error = (root / "error_stream.sse").read_bytes()

    def _values(self, reply: OpenAIReply) -> dict[str, bytes]:
        return {
            "id": jstr(reply.id),
            "created": jint(reply.created),
            "model": jstr(reply.model),
            "finish_reason": jstr(reply.finish_reason),
            "prompt_tokens": jint(reply.prompt_tokens),
            "completion_tokens": jint(reply.completion_tokens),
            "total_tokens": jint(reply.prompt_tokens + reply.completion_tokens),
            "cached_tokens": jint(reply.cached_tokens),
        }

    def render_completion(self, reply: OpenAIReply) -> bytes:
        values = self._values(reply)
        if reply.tool is None:
            values["content"] = b"null" if reply.content_chunks is None else jstr("".join(reply.content_chunks))
            return self.completion.render(values)
        values["tool_id"] = jstr(reply.tool.id)
        values["tool_name"] = jstr(reply.tool.name)
        values["arguments"] = jstr(compact_json(reply.tool.input).decode())
        return self.tool_completion.render(values)

    def render_stream(self, reply: OpenAIReply, include_usage: bool) -> list[bytes]:
        """The SSE chunks of a streamed completion, ending with ``data: [DONE]``."""
        values = self._values(reply)
        pool = reply.obfuscation or self.obfuscation
        counter = 0

        def next_obfuscation() -> bytes:
            nonlocal counter
            value = pool[counter % len(pool)]
            counter += 1
            return jstr(value)

        if reply.tool is None:
            t = self.text_chunks
            pieces = reply.content_chunks or []
        else:
            t = self.tool_chunks
            values["tool_id"] = jstr(reply.tool.id)
            values["tool_name"] = jstr(reply.tool.name)
            pieces = reply.tool.chunks or chunk_chars(compact_json(reply.tool.input).decode(), 8)
        first, body, finish = (t.first, t.body, t.finish) if include_usage else (t.first_nu, t.body_nu, t.finish_nu)
        out = [first.render({**values, "obfuscation": next_obfuscation()})]
        out.extend(body.render({**values, "piece": jstr(p), "obfuscation": next_obfuscation()}) for p in pieces)
        out.append(finish.render({**values, "obfuscation": next_obfuscation()}))
        if include_usage:
            out.append(t.usage.render({**values, "obfuscation": next_obfuscation()}))
        out.append(SSE_DONE)
        return out

    def render_embeddings(self, model: str, vectors: Sequence[list[float] | str], prompt_tokens: int) -> bytes:
        doc = copy.deepcopy(self.embeddings)
        item = doc["data"][0]
        doc["data"] = [{**item, "index": n, "embedding": v} for n, v in enumerate(vectors)]
        doc["model"] = model
        doc["usage"] = {**doc["usage"], "prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
        return pretty_json(doc)

    def render_error(self, stem: str, message: str | None = None) -> bytes:
        raw = self.errors[stem]
        if message is None:
            return raw
        doc = json.loads(raw)
        doc["error"]["message"] = message
        return pretty_json(doc, indent=4)
