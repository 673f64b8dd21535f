"""A fake LLM provider that speaks the Anthropic Messages and OpenAI Chat Completions wire formats (and, through
``tests.fakes.responses_wire`` and ``tests.fakes.gemini_wire``, the OpenAI Responses API and Gemini).

Used by tests and benchmarks as the upstream behind the gateway. Every answer is rendered from the recorded-style
fixtures under ``tests/fixtures/{anthropic,openai}``: the fixtures are parsed once, the fields that change per request
(model, ids, text, usage, ...) are turned into slots, and the result is kept as byte templates. Serving a request fills
the slots, so apart from parsing the request body there is no JSON work per request, and the bytes keep the exact shape
of the recorded ones (compact JSON and ``event:``/``data:`` SSE for Anthropic, pretty-printed JSON and ``data:``-only
SSE ending in ``data: [DONE]`` for OpenAI). ``tests/unit/test_fake_upstream.py`` checks that rendering a fixture's own
values gives back the fixture byte for byte.

Behaviour
- The answer text is ``"echo: " + <last user text, truncated to 200 chars>``.
- Input tokens are ``max(1, len(body) // 4)``; output tokens are ``max(1, len(answer) // 4)``.
- Anthropic reports cache tokens (taken from the fixture) only when the request contains ``cache_control``;
  OpenAI reports ``cached_tokens`` = half the prompt rounded down to 128 once the prompt reaches 1024 tokens.
- Tools: Anthropic answers with ``tool_use`` when the request has ``tools`` and either ``tool_choice`` forces a tool
  (``any``/``tool``) or the last message's text contains "use a tool"; OpenAI the same with ``required`` or a named
  function. The tool input is built from the tool's JSON schema (its required properties).
- Model names script failures: ``error-429`` (429 + ``retry-after: 1``), ``error-500``, ``error-529`` (Anthropic 529
  ``overloaded_error``; 503 ``server_is_overloaded`` on OpenAI routes), ``slow`` (sleeps ``slow_delay`` before the first
  byte), ``stream-abort`` (drops the connection after a few events), ``stream-error`` (an in-stream error event).
- Auth: Anthropic routes need a key in ``x-api-key`` (or ``Authorization: Bearer``, which anthropic-python 2.x sends)
  and an ``anthropic-version`` header; OpenAI routes need ``Authorization: Bearer``. Failures use the providers' bodies.
- ``fail_next(status, body, headers, times)`` scripts the next answers, whatever the route.

Run standalone (benchmarks): ``python -m tests.fakes.upstream --port 9999``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import random
import re
import secrets
import string
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

ECHO_PREFIX = "echo: "
ECHO_LIMIT = 200
TOOL_TRIGGER = "use a tool"

_rng = random.Random()
_ALNUM = string.ascii_letters + string.digits


def _rand(n: int) -> str:
    return "".join(_rng.choices(_ALNUM, k=n))


def anthropic_message_id() -> str:
    return "msg_01" + _rand(22)


def anthropic_tool_id() -> str:
    return "toolu_01" + _rand(22)


def anthropic_request_id() -> str:
    return "req_011C" + _rand(20)


def openai_completion_id() -> str:
    return "chatcmpl-" + _rand(29)


def openai_call_id() -> str:
    return "call_" + _rand(24)


def openai_request_id() -> str:
    return "req_" + secrets.token_hex(16)


# --------------------------------------------------------------------------------------------------------------------
# Serialisation styles, SSE framing and byte templates
# --------------------------------------------------------------------------------------------------------------------


def compact_json(obj: Any) -> bytes:
    """Anthropic bodies and SSE data lines, and OpenAI SSE data lines: no spaces, raw UTF-8, no trailing newline."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def pretty_json(obj: Any, indent: int = 2) -> bytes:
    """OpenAI non-streaming bodies (indent 2) and OpenAI error bodies (indent 4), each ending with a newline."""
    return (json.dumps(obj, ensure_ascii=False, indent=indent) + "\n").encode()


def nested_pretty(value: Any, depth: int) -> bytes:
    """``value`` as it appears inside a pretty-printed (indent 2) document at ``depth`` spaces: for slots that hold
    structures, so the whole body reads as if pretty-printed at once."""
    return json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n" + " " * depth).encode()


def sse_event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def sse_data(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def parse_sse(raw: bytes) -> list[tuple[str | None, bytes]]:
    """Split an SSE byte stream into (event name, data) pairs."""
    events: list[tuple[str | None, bytes]] = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[bytes] = []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
        events.append((name, b"\n".join(data)))
    return events


_SLOT_RE = re.compile(rb'"\$\{([a-z0-9_]+)\}"')


def slot(name: str) -> str:
    return "${" + name + "}"


class Template:
    """Serialised JSON in which some values are slots (``"${name}"``), filled with raw JSON bytes at render time."""

    __slots__ = ("_literals", "_names")

    def __init__(self, raw: bytes) -> None:
        parts = _SLOT_RE.split(raw)
        self._literals: list[bytes] = parts[0::2]
        self._names: list[str] = [p.decode() for p in parts[1::2]]

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def render(self, values: Mapping[str, bytes]) -> bytes:
        out = [self._literals[0]]
        for name, literal in zip(self._names, self._literals[1:], strict=True):
            out.append(values[name])
            out.append(literal)
        return b"".join(out)


JsonPath = tuple[str | int, ...]
Slots = dict[JsonPath, str]


def _marked(obj: Any, slots: Mapping[JsonPath, str]) -> Any:
    """A deep copy of ``obj`` with the value at each path replaced by a slot marker (the path must exist)."""
    out = copy.deepcopy(obj)
    for path, name in slots.items():
        target = out
        for key in path[:-1]:
            target = target[key]
        last = path[-1]
        if isinstance(last, str) and last not in target:
            raise KeyError(f"fixture has no {'.'.join(map(str, path))}")
        target[last] = slot(name)
    return out


def _without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


def jstr(value: str) -> bytes:
    return orjson.dumps(value)


def jint(value: int) -> bytes:
    return str(value).encode()


def chunk_words(text: str, words_per_chunk: int) -> list[str]:
    """Split text into chunks of a few words, each keeping its leading whitespace (as providers stream it)."""
    tokens = re.findall(r"\s*\S+", text) or [text]
    trailing = text[len("".join(tokens)) :]
    if trailing:
        tokens[-1] += trailing
    return ["".join(tokens[i : i + words_per_chunk]) for i in range(0, len(tokens), words_per_chunk)]


def chunk_chars(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --------------------------------------------------------------------------------------------------------------------
# What a reply says, independent of the wire format
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ToolUse:
    id: str
    name: str
    input: dict[str, Any]
    # Anthropic streams `input` as input_json_delta fragments (the first one empty); OpenAI streams `arguments`.
    chunks: list[str] | None = None


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
        if reply.text_chunks is not None:
            i = jint(index)
            events.append(self.text_start.render({"index": i}))
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


# --------------------------------------------------------------------------------------------------------------------
# Request reading
# --------------------------------------------------------------------------------------------------------------------


def _text_of(content: Any) -> str | None:
    """The text of a message's content (a string, or the last text block / part), or None if it has no text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") in ("text", "input_text")]
        texts = [t for t in texts if isinstance(t, str)]
        if texts:
            return texts[-1]
    return None


def last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _text_of(message.get("content"))
            if text is not None:
                return text
    return ""


def _last_message_text(messages: Any) -> str:
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return _text_of(messages[-1].get("content")) or ""
    return ""


def echo_text(messages: Any) -> str:
    return ECHO_PREFIX + last_user_text(messages)[:ECHO_LIMIT]


def _example(schema: Any, text: str) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if isinstance(schema, dict) and isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if kind == "object":
        return tool_input_for(schema, text)
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(kind or "", text)


def tool_input_for(schema: Any, text: str) -> dict[str, Any]:
    """A value for each required property of a JSON schema (strings get a piece of the prompt)."""
    if not isinstance(schema, dict):
        return {}
    raw = schema.get("properties")
    properties: dict[str, Any] = raw if isinstance(raw, dict) else {}
    required = [r for r in schema.get("required") or [] if isinstance(r, str)]
    return {name: _example(properties.get(name, {}), text[:60]) for name in required}


def openai_cached_tokens(prompt_tokens: int) -> int:
    return (prompt_tokens // 2) // 128 * 128 if prompt_tokens >= 1024 else 0


def embedding_vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for ``text`` with float32-like precision."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [float(f"{struct.unpack('<f', struct.pack('<f', x / norm))[0]:.8g}") for x in raw]


def embedding_base64(vector: Sequence[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class _Failure:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str]


_ANTHROPIC = "anthropic"
_OPENAI = "openai"
_ROUTES: dict[tuple[str, str], str] = {}
for _prefix in ("", "/v1"):
    _ROUTES["POST", _prefix + "/messages"] = "messages"
    _ROUTES["POST", _prefix + "/messages/count_tokens"] = "count_tokens"
    _ROUTES["POST", _prefix + "/chat/completions"] = "chat"
    _ROUTES["POST", _prefix + "/embeddings"] = "embeddings"
    _ROUTES["POST", _prefix + "/responses"] = "responses"  # tests.fakes.responses_wire
    _ROUTES["POST", _prefix + "/responses/input_tokens"] = "input_tokens"
    _ROUTES["GET", _prefix + "/models"] = "models"

_ANTHROPIC_ORG = "4f2e8c1a-6b7d-4e3f-9a1c-2d5b8e7f0a93"
_DEFAULT_EMBEDDING_DIMS = {"text-embedding-3-large": 3072}


class FakeUpstream:
    """An aiohttp server speaking the Anthropic and OpenAI wire formats (see the module docstring).

    Knobs (plain attributes): ``record_requests`` (keep every request in ``requests``; on), ``slow_delay`` (seconds,
    for ``slow`` models), ``abort_after_events`` (events sent before ``stream-abort``/``stream-error``), and
    ``valid_keys`` (``None`` accepts any non-empty key; a set makes other keys fail with the provider's 401).
    ``reset()`` restores them, except ``record_requests``.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.streamed: list[bytes] = []  # every whole stream sent, while record_requests is on
        self.base_url = ""
        self.record_requests = True
        self.slow_delay = 0.5
        self.abort_after_events = 4
        self.event_delay = 0.0  # seconds before each streamed event
        self.streams_cut_by_client = 0
        self.valid_keys: set[str] | None = None  # None: any non-empty key is accepted
        self.require_auth = True  # False: answer without any credential, as a self-hosted server does
        self.anthropic = AnthropicWire()
        self.openai = OpenAIWire()
        # The Responses API and Gemini live in their own modules (which build on this one).
        from tests.fakes import gemini_wire, responses_wire

        self.responses = responses_wire.ResponsesWire()
        self.gemini = gemini_wire.GeminiWire()
        self._serve_responses, self._serve_gemini = responses_wire.serve, gemini_wire.serve
        self._gemini_path = gemini_wire.GEMINI_PATH
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None and getattr(server, "sockets", None)
        bound = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        self.base_url = f"http://{host}:{bound[1]}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def reset(self) -> None:
        """Forget recorded requests and scripted behaviour."""
        with self._lock:
            self.requests.clear()
            self.streamed.clear()
            self._failures.clear()
        self.valid_keys = None
        self.require_auth = True
        self.slow_delay = 0.5
        self.event_delay = 0.0
        self.streams_cut_by_client = 0

    def fail_next(
        self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``body``, else the provider's usual error body)."""
        with self._lock:
            for _ in range(times):
                self._failures.append(_Failure(status, body, dict(headers or {})))

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    # -- dispatch ----------------------------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        if self.record_requests:
            recorded = RecordedRequest(request.method, request.path, request.query_string, headers, body)
            with self._lock:
                self.requests.append(recorded)
        gemini = self._gemini_path.match(request.path) if request.method == "POST" else None
        if gemini is not None:
            return await self._serve_gemini(self, request, body, headers, gemini.group(1), gemini.group(2))
        route = _ROUTES.get((request.method, request.path))
        style = _ANTHROPIC if route in ("messages", "count_tokens") else _OPENAI
        if route == "models" and ("anthropic-version" in headers or "x-api-key" in headers):
            style = _ANTHROPIC

        failure = self._take_failure()
        if failure is not None:
            return self._scripted(failure, style)
        if route is None:
            return self._not_found(request, style)

        denied = self._check_auth(headers, style)
        if denied is not None:
            return denied
        if route == "models":
            return self._json(style, 200, self.anthropic.models if style == _ANTHROPIC else self.openai.models)

        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            return self._bad_request(style, "There was an error parsing the body: the body is not a JSON object.")
        model = doc.get("model")
        if not isinstance(model, str) or not model:
            if style == _ANTHROPIC:
                return self._bad_request(style, "model: Field required")
            return self._bad_request(style, "you must provide a model parameter")

        scripted = self._model_failure(model, style)
        if scripted is not None:
            return scripted
        if "slow" in model:
            await asyncio.sleep(self.slow_delay)

        if route == "messages":
            return await self._messages(request, body, doc, model)
        if route == "count_tokens":
            return self._json(
                _ANTHROPIC, 200, self.anthropic.count_tokens.render({"input_tokens": jint(max(1, len(body) // 4))})
            )
        if route == "chat":
            return await self._chat(request, body, doc, model)
        if route in ("responses", "input_tokens"):
            return await self._serve_responses(self, request, body, doc, model, route)
        return self._embeddings(doc, model)

    # -- auth and errors ---------------------------------------------------------------------------------------------

    def _check_auth(self, headers: Mapping[str, str], style: str) -> web.Response | None:
        if not self.require_auth:
            return None
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if style == _ANTHROPIC:
            # API keys come in `x-api-key`; recent SDKs (anthropic-python 2.x) send them as `Authorization: Bearer`.
            key = headers.get("x-api-key", "").strip() or token
            if not key:
                return self._anthropic_error(401, "error_authentication")
            if self.valid_keys is not None and key not in self.valid_keys:
                return self._anthropic_error(401, "error_invalid_api_key")
            if not headers.get("anthropic-version", "").strip():
                return self._anthropic_error(400, "error_invalid_request")
            return None
        if not token:
            return self._json(_OPENAI, 401, self.openai.render_error("error_missing_api_key"))
        if self.valid_keys is not None and token not in self.valid_keys:
            masked = token[:8] + "*" * max(0, len(token) - 12) + token[-4:]
            message = (
                f"Incorrect API key provided: {masked}. "
                "You can find your API key at https://platform.openai.com/account/api-keys."
            )
            return self._json(_OPENAI, 401, self.openai.render_error("error_invalid_api_key", message))
        return None

    def _model_failure(self, model: str, style: str) -> web.Response | None:
        retry = {"retry-after": "1"}
        if "error-429" in model:
            if style == _ANTHROPIC:
                return self._anthropic_error(429, "error_rate_limit", extra=retry)
            return self._json(_OPENAI, 429, self.openai.render_error("error_rate_limit"), retry)
        if "error-500" in model:
            if style == _ANTHROPIC:
                return self._anthropic_error(500, "error_api")
            return self._json(_OPENAI, 500, self.openai.render_error("error_server"))
        if "error-529" in model:
            if style == _ANTHROPIC:
                return self._anthropic_error(529, "error_overloaded")
            return self._json(_OPENAI, 503, self.openai.render_error("error_overloaded"))
        return None

    def _anthropic_error(
        self, status: int, stem: str, message: str | None = None, extra: Mapping[str, str] | None = None
    ) -> web.Response:
        request_id = anthropic_request_id()
        body = self.anthropic.render_error(stem, request_id, message)
        return self._json(_ANTHROPIC, status, body, extra, request_id=request_id)

    def _bad_request(self, style: str, message: str) -> web.Response:
        if style == _ANTHROPIC:
            return self._anthropic_error(400, "error_invalid_request", message)
        return self._json(_OPENAI, 400, self.openai.render_error("error_invalid_request", message))

    def _not_found(self, request: web.Request, style: str) -> web.Response:
        if request.headers.get("x-api-key") or request.headers.get("anthropic-version"):
            return self._anthropic_error(404, "error_not_found")
        message = f"Invalid URL ({request.method} {request.path})"
        return self._json(_OPENAI, 404, self.openai.render_error("error_not_found", message))

    def _scripted(self, failure: _Failure, style: str) -> web.Response:
        if failure.body is not None:
            body = compact_json(failure.body) if style == _ANTHROPIC else pretty_json(failure.body, indent=4)
            return self._json(style, failure.status, body, failure.headers)
        if style == _ANTHROPIC:
            stem = {
                400: "error_invalid_request",
                401: "error_invalid_api_key",
                404: "error_not_found",
                429: "error_rate_limit",
                529: "error_overloaded",
            }.get(failure.status, "error_api")
            return self._anthropic_error(failure.status, stem, extra=failure.headers)
        stem = {
            401: "error_invalid_api_key",
            404: "error_not_found",
            429: "error_rate_limit",
            503: "error_overloaded",
            400: "error_invalid_request",
        }.get(failure.status, "error_server")
        return self._json(_OPENAI, failure.status, self.openai.render_error(stem), failure.headers)

    # -- responses ---------------------------------------------------------------------------------------------------

    def _headers(self, style: str, content_type: str, request_id: str | None = None) -> dict[str, str]:
        if style == _ANTHROPIC:
            return {
                "Content-Type": content_type,
                "request-id": request_id or anthropic_request_id(),
                "anthropic-organization-id": _ANTHROPIC_ORG,
            }
        return {
            "Content-Type": content_type,
            "x-request-id": request_id or openai_request_id(),
            "openai-version": "2020-10-01",
            "openai-processing-ms": "42",
        }

    def _json(
        self,
        style: str,
        status: int,
        body: bytes,
        extra: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> web.Response:
        headers = self._headers(style, "application/json", request_id)
        if extra:
            headers.update(extra)
        return web.Response(status=status, body=body, headers=headers)

    async def _send_events(
        self, request: web.Request, style: str, events: list[bytes], model: str, error_event: bytes
    ) -> web.StreamResponse:
        headers = self._headers(style, "text/event-stream; charset=utf-8")
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(status=200, headers=headers)
        await response.prepare(request)
        if "stream-abort" in model or "stream-error" in model:
            for event in events[: self.abort_after_events]:
                await response.write(event)
            if "stream-error" in model:
                await response.write(error_event)
                await response.write_eof()
                return response
            await _drop_connection(request)
            return response
        try:
            for event in events:
                if self.event_delay:
                    await asyncio.sleep(self.event_delay)
                await response.write(event)
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_cut_by_client += 1  # the caller (the gateway) went away mid-stream
            raise
        await response.write_eof()
        self.record_stream(events)
        return response

    def record_stream(self, events: list[bytes]) -> None:
        """Keeps a whole stream that was sent (``streamed``), so a test can check it arrived untouched."""
        if self.record_requests:
            with self._lock:
                self.streamed.append(b"".join(events))

    async def _send_body(self, request: web.Request, style: str, body: bytes, model: str) -> web.StreamResponse:
        if "stream-abort" not in model:
            return self._json(style, 200, body)
        response = web.StreamResponse(status=200, headers=self._headers(style, "application/json"))
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        await _drop_connection(request)
        return response

    # -- Anthropic ---------------------------------------------------------------------------------------------------

    def anthropic_reply(self, doc: Mapping[str, Any], body: bytes, model: str) -> AnthropicReply:
        messages = doc.get("messages")
        if not isinstance(messages, list):
            messages = []
        text = echo_text(messages)
        tools = [t for t in doc.get("tools") or [] if isinstance(t, dict) and t.get("name")]
        raw_choice = doc.get("tool_choice")
        choice: dict[str, Any] = raw_choice if isinstance(raw_choice, dict) else {}
        forced = choice.get("type") in ("any", "tool")
        tool: ToolUse | None = None
        if tools and choice.get("type") != "none" and (forced or TOOL_TRIGGER in _last_message_text(messages).lower()):
            chosen = next((t for t in tools if t["name"] == choice.get("name")), tools[0])
            tool = ToolUse(
                anthropic_tool_id(),
                chosen["name"],
                tool_input_for(chosen.get("input_schema"), last_user_text(messages)),
            )
        output = max(1, len(text) // 4)
        if tool is not None:
            output += max(1, len(json.dumps(tool.input)) // 4) + 40
        cached = b'"cache_control"' in body
        cw, cr, e5, e1 = self.anthropic.fixture_cache if cached else (0, 0, 0, 0)
        return AnthropicReply(
            model=model,
            id=anthropic_message_id(),
            text_chunks=None if forced and tool is not None else chunk_words(text, 3),
            tool=tool,
            stop_reason="tool_use" if tool is not None else "end_turn",
            input_tokens=max(1, len(body) // 4),
            output_tokens=output,
            cache_creation_input_tokens=cw,
            cache_read_input_tokens=cr,
            ephemeral_5m_input_tokens=e5,
            ephemeral_1h_input_tokens=e1,
        )

    async def _messages(self, request: web.Request, body: bytes, doc: dict[str, Any], model: str) -> web.StreamResponse:
        if not isinstance(doc.get("max_tokens"), int):
            return self._bad_request(_ANTHROPIC, "max_tokens: Field required")
        if not isinstance(doc.get("messages"), list):
            return self._bad_request(_ANTHROPIC, "messages: Field required")
        reply = self.anthropic_reply(doc, body, model)
        if doc.get("stream") is True:
            events = self.anthropic.render_stream(reply)
            return await self._send_events(request, _ANTHROPIC, events, model, self.anthropic.stream_error)
        return await self._send_body(request, _ANTHROPIC, self.anthropic.render_message(reply), model)

    # -- OpenAI ------------------------------------------------------------------------------------------------------

    def openai_reply(self, doc: Mapping[str, Any], body: bytes, model: str) -> OpenAIReply:
        messages = doc.get("messages")
        if not isinstance(messages, list):
            messages = []
        text = echo_text(messages)
        tools = [
            t["function"]
            for t in doc.get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("function"), dict) and t["function"].get("name")
        ]
        choice = doc.get("tool_choice")
        named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
        forced = choice == "required" or named is not None
        tool: ToolUse | None = None
        if tools and choice != "none" and (forced or TOOL_TRIGGER in _last_message_text(messages).lower()):
            chosen = next((t for t in tools if t["name"] == named), tools[0])
            tool = ToolUse(
                openai_call_id(), chosen["name"], tool_input_for(chosen.get("parameters"), last_user_text(messages))
            )
        prompt = max(1, len(body) // 4)
        if tool is not None:
            completion = max(1, len(compact_json(tool.input)) // 4) + 10
            # OpenAI ends a call forced by name with "stop", and any other tool call with "tool_calls".
            finish = "stop" if named is not None else "tool_calls"
        else:
            completion = max(1, len(text) // 4)
            finish = "stop"
        return OpenAIReply(
            model=model,
            id=openai_completion_id(),
            created=int(time.time()),
            content_chunks=None if tool is not None else chunk_words(text, 1),
            tool=tool,
            finish_reason=finish,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cached_tokens=openai_cached_tokens(prompt),
        )

    async def _chat(self, request: web.Request, body: bytes, doc: dict[str, Any], model: str) -> web.StreamResponse:
        if not isinstance(doc.get("messages"), list):
            return self._bad_request(_OPENAI, "Missing required parameter: 'messages'.")
        reply = self.openai_reply(doc, body, model)
        if doc.get("stream") is True:
            options = doc.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events = self.openai.render_stream(reply, include_usage)
            return await self._send_events(request, _OPENAI, events, model, self.openai.stream_error)
        return await self._send_body(request, _OPENAI, self.openai.render_completion(reply), model)

    def _embeddings(self, doc: dict[str, Any], model: str) -> web.Response:
        raw = doc.get("input")
        inputs: list[Any] = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        if raw is None or raw == [] or raw == "":
            return self._bad_request(
                _OPENAI,
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            )
        dims = doc.get("dimensions")
        if not isinstance(dims, int) or dims <= 0:
            dims = _DEFAULT_EMBEDDING_DIMS.get(model, 1536)
        as_base64 = doc.get("encoding_format") == "base64"
        vectors: list[list[float] | str] = []
        tokens = 0
        for item in inputs:
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += len(item) if isinstance(item, list) else max(1, len(text) // 4)
            vector = embedding_vector(text, dims)
            vectors.append(embedding_base64(vector) if as_base64 else vector)
        return self._json(_OPENAI, 200, self.openai.render_embeddings(model, vectors, tokens))


async def _drop_connection(request: web.Request) -> None:
    """Close the socket mid-body, as a network failure would (the client sees an incomplete response)."""
    await asyncio.sleep(0.01)
    transport = request.transport
    if transport is not None:
        transport.close()
    # Make aiohttp give up on this response quietly instead of finishing it.
    raise asyncio.CancelledError


# --------------------------------------------------------------------------------------------------------------------
# A FakeUpstream on its own event loop in a background thread, for tests that use the synchronous SDK clients
# --------------------------------------------------------------------------------------------------------------------


class FakeUpstreamThread:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = FakeUpstream()
        self.base_url = ""
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-upstream", daemon=True)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.upstream.requests

    def __enter__(self) -> FakeUpstreamThread:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.upstream.start(self._host, self._port), self._loop)
        self.base_url = future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.upstream.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()


# --------------------------------------------------------------------------------------------------------------------
# python -m tests.fakes.upstream
# --------------------------------------------------------------------------------------------------------------------


async def _serve(host: str, port: int, record: bool) -> None:
    upstream = FakeUpstream()
    upstream.record_requests = record
    url = await upstream.start(host, port)
    print(f"fake upstream listening on {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await upstream.close()


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Anthropic + OpenAI upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--record", action="store_true", help="keep every request in memory (off by default)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            import uvloop
        except ImportError:
            asyncio.run(_serve(args.host, args.port, args.record))
        else:
            uvloop.run(_serve(args.host, args.port, args.record))


if __name__ == "__main__":
    main()
