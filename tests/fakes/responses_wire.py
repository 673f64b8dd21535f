"""The OpenAI Responses API (``POST /v1/responses``, ``/v1/responses/input_tokens``) for the fake upstream.

Like the Anthropic and Chat Completions fakes in ``tests.fakes.upstream``, answers are rendered from byte templates
built once from the fixtures under ``tests/fixtures/openai/response*`` (written after the API reference's examples and
OpenAI's SDK types: pretty-printed JSON bodies; named SSE events, each with a ``sequence_number``, compact JSON, no
``[DONE]``; deltas carry an ``obfuscation`` string; usage only in the terminal ``response.completed``).

Behaviour (as the Chat Completions fake): the answer echoes the last user text; a function call is made when the
request has ``tools`` and ``tool_choice`` is ``required`` or names a function, or the last input item says
"use a tool"; input tokens are ``len(body) // 4`` (cached as for Chat
Completions). ``stream-error`` models end with an ``error`` event.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes import rules_responses
from tests.fakes.upstream import _OPENAI
from tests.fakes.wire_kit import (
    FIXTURES,
    TOOL_TRIGGER,
    Template,
    ToolUse,
    _last_message_text,
    _marked,
    _rand,
    chunk_chars,
    chunk_words,
    compact_json,
    echo_text,
    jint,
    jstr,
    last_user_text,
    nested_pretty,
    openai_cached_tokens,
    parse_sse,
    pretty_json,
    sse_event,
    tool_input_for,
)

if TYPE_CHECKING:
    from tests.fakes.upstream import FakeUpstream


def response_id() -> str:
    return "resp_" + _rand(48)


def item_id(prefix: str) -> str:
    return prefix + "_" + _rand(48)


def call_id() -> str:
    return "call_" + _rand(24)


@dataclass
class ResponsesReply:
    model: str
    id: str
    created: int
    text_chunks: list[str] | None  # None: no message item
    tool: ToolUse | None
    tools: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    item_ids: dict[str, str] = field(default_factory=lambda: {"msg": item_id("msg"), "fc": item_id("fc")})


def conversation(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as role/content messages (a bare string is one user message)."""
    given = doc.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return [i for i in given or [] if isinstance(i, dict) and "role" in i]


def _events(raw: bytes) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, data in parse_sse(raw):
        out.setdefault(name or "", []).append(json.loads(data))
    return out


_USAGE = {
    ("usage", "input_tokens"): "input_tokens",
    ("usage", "input_tokens_details", "cached_tokens"): "cached_tokens",
    ("usage", "output_tokens"): "output_tokens",
    ("usage", "total_tokens"): "total_tokens",
}
_HEAD = {("id",): "id", ("created_at",): "created", ("model",): "model", ("tools",): "tools"}


def _event(name: str, doc: dict[str, Any], slots: dict[Any, str]) -> Template:
    return Template(sse_event(name, compact_json(_marked(doc, {("sequence_number",): "seq", **slots}))))


class ResponsesWire:
    """Templates for the Responses API, built from ``tests/fixtures/openai/response*``."""

    def __init__(self, root: Path = FIXTURES / "openai") -> None:
        whole = json.loads((root / "response.json").read_bytes())
        called = json.loads((root / "response_function_call.json").read_bytes())
        text = _events((root / "response_stream.sse").read_bytes())
        tool = _events((root / "response_function_call_stream.sse").read_bytes())
        self.response = Template(pretty_json(_marked(whole, {**_HEAD, ("output",): "output", **_USAGE})))
        self.message_item = Template(
            compact_json(_marked(whole["output"][0], {("id",): "item_id", ("content", 0, "text"): "text"}))
        )
        fc = {("id",): "item_id", ("call_id",): "call_id", ("name",): "name", ("arguments",): "arguments"}
        self.call_item = Template(compact_json(_marked(called["output"][0], fc)))
        started = text["response.created"][0]["response"]
        self.created = _event("response.created", text["response.created"][0], self._head(started))
        self.in_progress = _event("response.in_progress", text["response.in_progress"][0], self._head(started))
        item = ("item", "id")
        self.message_added = _event(
            "response.output_item.added", text["response.output_item.added"][0], {item: "item_id"}
        )
        self.part_added = _event(
            "response.content_part.added", text["response.content_part.added"][0], {("item_id",): "item_id"}
        )
        delta_slots = {("item_id",): "item_id", ("delta",): "delta", ("obfuscation",): "obfuscation"}
        self.text_delta = _event("response.output_text.delta", text["response.output_text.delta"][0], delta_slots)
        self.text_done = _event(
            "response.output_text.done",
            text["response.output_text.done"][0],
            {("item_id",): "item_id", ("text",): "text"},
        )
        self.part_done = _event(
            "response.content_part.done",
            text["response.content_part.done"][0],
            {("item_id",): "item_id", ("part", "text"): "text"},
        )
        self.item_done = _event("response.output_item.done", text["response.output_item.done"][0], {("item",): "item"})
        self.call_added = _event(
            "response.output_item.added",
            tool["response.output_item.added"][0],
            {item: "item_id", ("item", "call_id"): "call_id", ("item", "name"): "name"},
        )
        self.args_delta = _event(
            "response.function_call_arguments.delta", tool["response.function_call_arguments.delta"][0], delta_slots
        )
        self.args_done = _event(
            "response.function_call_arguments.done",
            tool["response.function_call_arguments.done"][0],
            {("item_id",): "item_id", ("arguments",): "arguments"},
        )
        completed = text["response.completed"][0]
        self.completed = _event(
            "response.completed",
            completed,
            {
                **self._head(completed["response"]),
                ("response", "output"): "output",
                **{("response", *p): n for p, n in _USAGE.items()},
            },
        )
        self.obfuscation = [e["obfuscation"] for e in text["response.output_text.delta"]]
        self.input_tokens = Template(
            pretty_json(
                _marked(json.loads((root / "response_input_tokens.json").read_bytes()), {("input_tokens",): "n"})
            )
        )
        self.stream_error = (root / "response_error_stream.sse").read_bytes()
        # The function-call ids of the responses served, for `previous_response_id` (oldest forgotten first).
        self.calls: dict[str, set[str]] = {}

    def remember(self, reply: ResponsesReply) -> None:
        self.calls[reply.id] = {reply.tool.id} if reply.tool is not None else set()
        while len(self.calls) > 10_000:
            del self.calls[next(iter(self.calls))]

    @staticmethod
    def _head(response: dict[str, Any]) -> dict[Any, str]:
        del response  # every lifecycle event carries the same head
        return {("response", *path): name for path, name in _HEAD.items()}

    # -- rendering ---------------------------------------------------------------------------------------------------

    def _values(self, reply: ResponsesReply) -> dict[str, bytes]:
        return {
            "id": jstr(reply.id),
            "created": jint(reply.created),
            "model": jstr(reply.model),
            "tools": compact_json(reply.tools),
            "input_tokens": jint(reply.input_tokens + reply.cached_tokens),
            "cached_tokens": jint(reply.cached_tokens),
            "output_tokens": jint(reply.output_tokens),
            "total_tokens": jint(reply.input_tokens + reply.cached_tokens + reply.output_tokens),
        }

    def _items(self, reply: ResponsesReply, ids: dict[str, str]) -> list[bytes]:
        items = []
        if reply.text_chunks is not None:
            items.append(
                self.message_item.render({"item_id": jstr(ids["msg"]), "text": jstr("".join(reply.text_chunks))})
            )
        if reply.tool is not None:
            items.append(
                self.call_item.render(
                    {
                        "item_id": jstr(ids["fc"]),
                        "call_id": jstr(reply.tool.id),
                        "name": jstr(reply.tool.name),
                        "arguments": jstr(compact_json(reply.tool.input).decode()),
                    }
                )
            )
        return items

    def render_response(self, reply: ResponsesReply) -> bytes:
        items = [json.loads(item) for item in self._items(reply, reply.item_ids)]
        values = {**self._values(reply), "tools": nested_pretty(reply.tools, 2)}
        return self.response.render({**values, "output": nested_pretty(items, 2)})

    def render_stream(self, reply: ResponsesReply) -> list[bytes]:
        values = self._values(reply)
        ids = reply.item_ids
        items = self._items(reply, ids)
        seq = iter(range(10_000))
        pool = iter(self.obfuscation * 1000)

        def ev(template: Template, **fields: bytes) -> bytes:
            return template.render({**values, "seq": jint(next(seq)), **fields})

        out = [ev(self.created), ev(self.in_progress)]
        done = 0
        if reply.text_chunks is not None:
            msg = jstr(ids["msg"])
            text = jstr("".join(reply.text_chunks))
            out += [ev(self.message_added, item_id=msg), ev(self.part_added, item_id=msg)]
            out += [
                ev(self.text_delta, item_id=msg, delta=jstr(c), obfuscation=jstr(next(pool))) for c in reply.text_chunks
            ]
            out += [ev(self.text_done, item_id=msg, text=text), ev(self.part_done, item_id=msg, text=text)]
            out.append(ev(self.item_done, item=items[done]))
            done += 1
        if reply.tool is not None:
            fc, arguments = jstr(ids["fc"]), compact_json(reply.tool.input).decode()
            out.append(ev(self.call_added, item_id=fc, call_id=jstr(reply.tool.id), name=jstr(reply.tool.name)))
            for piece in reply.tool.chunks or chunk_chars(arguments, 8):
                out.append(ev(self.args_delta, item_id=fc, delta=jstr(piece), obfuscation=jstr(next(pool))))
            out.append(ev(self.args_done, item_id=fc, arguments=jstr(arguments)))
            out.append(ev(self.item_done, item=items[done]))
        out.append(ev(self.completed, output=b"[" + b",".join(items) + b"]"))
        return out

    def render_input_tokens(self, body: bytes) -> bytes:
        return self.input_tokens.render({"n": jint(max(1, len(body) // 4))})


def responses_reply(doc: dict[str, Any], body: bytes, model: str) -> ResponsesReply:
    messages = conversation(doc)
    text = echo_text(messages)
    tools = [t for t in doc.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function" and t.get("name")]
    choice = doc.get("tool_choice")
    named = choice.get("name") if isinstance(choice, dict) else None
    forced = choice == "required" or named is not None
    tool: ToolUse | None = None
    if tools and choice != "none" and (forced or TOOL_TRIGGER in _last_message_text(messages).lower()):
        chosen = next((t for t in tools if t["name"] == named), tools[0])
        tool = ToolUse(call_id(), chosen["name"], tool_input_for(chosen.get("parameters"), last_user_text(messages)))
    output = max(1, len(text) // 4) if tool is None else max(1, len(compact_json(tool.input)) // 4) + 10
    prompt = max(1, len(body) // 4)
    cached_tokens = openai_cached_tokens(prompt)  # as the Chat Completions fake: half, past 1,024 tokens
    return ResponsesReply(
        model=model,
        id=response_id(),
        created=int(time.time()),
        text_chunks=None if tool is not None else chunk_words(text, 1),
        tool=tool,
        tools=tools,
        input_tokens=prompt - cached_tokens,
        output_tokens=output,
        cached_tokens=cached_tokens,
    )


async def serve(
    up: FakeUpstream, request: web.Request, body: bytes, doc: dict[str, Any], model: str, route: str
) -> web.StreamResponse:
    wire: ResponsesWire = up.responses
    if route == "input_tokens":
        return up._json(_OPENAI, 200, wire.render_input_tokens(body))
    refused = rules_responses.check(doc, model, wire.calls.get)
    if refused is not None:
        return up.refuse(_OPENAI, refused)
    reply = responses_reply(doc, body, model)
    wire.remember(reply)
    if doc.get("stream") is True:
        return await up._send_events(request, _OPENAI, wire.render_stream(reply), model, wire.stream_error)
    return await up._send_body(request, _OPENAI, wire.render_response(reply), model)
