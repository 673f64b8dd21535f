"""A deterministic provider chosen by model name, for demos and tests; it makes no network call.

- `echo` (any other name too): answers "echo: <last user text>"
- `slow`: waits `SLOW_DELAY` seconds before the first byte
- `tool`: answers with a tool call to the first tool of the request
- `long`: answers with 10,000 characters, streamed in many pieces
- `error-429`, `error-500`, `error-529`: fails as a provider would
- `stream-abort`: breaks the stream after its first events
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Completion, Operation, ToolCall, Usage, WireFormat
from sluice.formats import anthropic_messages, gemini, openai_chat, openai_responses
from sluice.providers.base import ProviderCall, ProviderError, ProviderKey, ProviderReply, kind_of_status, seconds_of
from sluice.upstream.client import Timeouts

SLOW_DELAY = 0.2
_ERRORS = {
    "error-429": (429, "fake provider: rate limited", {"retry-after": "1"}),
    "error-500": (500, "fake provider: internal error", {}),
    "error-529": (529, "fake provider: overloaded", {}),
}


class FakeProvider:
    type = "fake"
    model_in_url = False

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.keys: list[ProviderKey] = []
        self.timeouts = Timeouts()

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return True

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        # Never consulted (the fake speaks every format); Messages is the richest if it were.
        return WireFormat.ANTHROPIC_MESSAGES if operation is not Operation.EMBED else WireFormat.OPENAI_EMBEDDINGS

    def serves(self, model: str) -> bool:
        return True

    def parse_error(self, reply: ProviderReply, call: ProviderCall) -> ProviderError:
        return _parse_error(self.name, reply)

    async def send(self, call: ProviderCall) -> ProviderReply:
        behaviour = call.model.rsplit("/", 1)[-1]
        if behaviour in _ERRORS:
            status, message, headers = _ERRORS[behaviour]
            return ProviderReply(status, "text/plain", dict(headers), body=message.encode())
        input_tokens = max(1, len(call.body) // 4)
        if call.operation is Operation.COUNT_TOKENS:
            if call.wire is WireFormat.OPENAI_RESPONSES:
                return _json(orjson.dumps({"object": "response.input_tokens", "input_tokens": input_tokens}))
            if call.wire is WireFormat.GEMINI:
                return _json(orjson.dumps({"totalTokens": input_tokens}))
            return _json(orjson.dumps({"input_tokens": input_tokens}))
        if call.operation is Operation.EMBED:
            inputs = call.doc.get("input")
            texts = [inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []]
            doc = openai_chat.render_embeddings(call.model, texts, Usage(input_tokens=input_tokens))
            return _json(orjson.dumps(doc))
        completion = _answer(call, input_tokens)
        if behaviour == "slow":
            await asyncio.sleep(SLOW_DELAY)
        if not call.stream:
            if call.wire is WireFormat.ANTHROPIC_MESSAGES:
                return _json(orjson.dumps(anthropic_messages.render_message(completion)))
            if call.wire is WireFormat.OPENAI_RESPONSES:
                return _json(orjson.dumps(openai_responses.render_response(completion)))
            if call.wire is WireFormat.GEMINI:
                return _json(orjson.dumps(gemini.render_response(completion)))
            return _json(orjson.dumps(openai_chat.render_completion(completion)))
        if call.wire is WireFormat.ANTHROPIC_MESSAGES:
            events = anthropic_messages.render_stream(completion, pieces=max(4, len(completion.text) // 100))
        elif call.wire is WireFormat.OPENAI_RESPONSES:
            events = openai_responses.render_stream(completion, pieces=max(4, len(completion.text) // 100))
        elif call.wire is WireFormat.GEMINI:
            events = gemini.render_stream(completion, pieces=max(4, len(completion.text) // 100))
        else:
            include = bool((call.doc.get("stream_options") or {}).get("include_usage"))
            events = openai_chat.render_stream(
                completion, include_usage=include, pieces=max(4, len(completion.text) // 100)
            )
        return ProviderReply(200, "text/event-stream", chunks=_stream(events, abort=behaviour == "stream-abort"))


def _parse_error(name: str, reply: ProviderReply) -> ProviderError:
    # The fake's error bodies are plain text: the gateway says them in its own words.
    message = (reply.body or b"").decode()
    return ProviderError(
        kind_of_status(reply.status), message, reply.status, retry_after=seconds_of(reply.headers.get("retry-after"))
    )


def _json(body: bytes) -> ProviderReply:
    return ProviderReply(200, "application/json", body=body)


async def _stream(events: list[bytes], *, abort: bool) -> AsyncIterator[bytes]:
    for n, event in enumerate(events):
        if abort and n == 3:
            raise SluiceError(ErrorKind.PROVIDER_STREAM_BROKEN, "fake provider: stream aborted")
        yield event


def _answer(call: ProviderCall, input_tokens: int) -> Completion:
    text = "echo: " + _last_user_text(_conversation(call.doc))[:200]
    if call.model.endswith("long"):
        text = "lorem ipsum " * 833
    tool_calls: list[ToolCall] = []
    stop = "end_turn"
    tools = call.doc.get("tools") or []
    if call.model.endswith("tool") and tools:
        name = tools[0].get("name") or (tools[0].get("function") or {}).get("name", "tool")
        tool_calls.append(ToolCall("toolu_" + uuid.uuid4().hex[:20], name, '{"query":"sluice"}'))
        stop = "tool_use"
    max_tokens = call.doc.get("max_tokens") or call.doc.get("max_completion_tokens")
    output_tokens = max(1, len(text) // 4)
    if isinstance(max_tokens, int) and output_tokens > max_tokens:
        output_tokens, stop = max_tokens, "max_tokens"
    prefix = "msg_" if call.wire is WireFormat.ANTHROPIC_MESSAGES else "chatcmpl-"
    return Completion(
        id=prefix + uuid.uuid4().hex[:24],
        model=call.model,
        text=text,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        stop_reason=stop,
        tool_calls=tool_calls,
    )


def _conversation(doc: dict[str, Any]) -> list[Any]:
    """Chat `messages`, or a Responses `input` (a string or a list of items)."""
    if "messages" in doc:
        return list(doc.get("messages") or [])
    if "contents" in doc:  # Gemini: [{"role": "user", "parts": [{"text": ...}]}]
        return [
            {
                "role": c.get("role", "user"),
                "content": [
                    {"type": "text", "text": p.get("text", "")} for p in c.get("parts") or () if isinstance(p, dict)
                ],
            }
            for c in doc.get("contents") or ()
            if isinstance(c, dict)
        ]
    given = doc.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return [item for item in given or [] if isinstance(item, dict)]


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [
                b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") in ("text", "input_text")
            ]
            if texts:
                return str(texts[-1])
    return ""
