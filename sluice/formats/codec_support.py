"""Small pieces every codec shares: data URLs, tool-argument JSON, error-body parsing, and the
bookkeeping that turns a wire stream into well-formed canonical block events (and back)."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, Literal

import orjson

from sluice.core.canonical import (
    BlockStart,
    BlockStop,
    ChatResponse,
    Failure,
    Finish,
    Message,
    Part,
    Start,
    StopReason,
    StreamEvent,
    Text,
    TextDelta,
    Thinking,
    ThinkingDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Untranslatable,
)
from sluice.core.types import Usage
from sluice.formats.sse import SSEDecoder

EARLY_END = "the upstream stream ended before it finished"
BAD_EVENT = "the upstream stream sent an event that is not a JSON object"


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def args_object(call: ToolCall, target: str) -> dict[str, Any]:
    """Formats that carry arguments as a JSON object need the text parsed; a model that produced
    broken JSON cannot be forwarded to them without inventing something."""
    try:
        value = orjson.loads(call.arguments_json or "{}")
    except orjson.JSONDecodeError:
        raise Untranslatable(f"{target}: the arguments of tool call {call.id!r} are not valid JSON") from None
    if not isinstance(value, dict):
        raise Untranslatable(f"{target}: the arguments of tool call {call.id!r} are not a JSON object")
    return value


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:image/png;base64,XXXX` -> ("image/png", "XXXX"); None for any other URL."""
    if not url.startswith("data:"):
        return None
    head, sep, data = url[5:].partition(",")
    if not sep or not head.endswith(";base64"):
        return None
    return head[: -len(";base64")], data


def data_url(media_type: str, data: str) -> str:
    return f"data:{media_type};base64,{data}"


def event_json(data: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def json_body(body: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if isinstance(doc, list) and doc and isinstance(doc[0], dict):
        doc = doc[0]  # Google sometimes wraps the error in a one-element array
    return doc if isinstance(doc, dict) else None


def body_text(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip() or "(empty error body)"


def own_thinking(part: Part, wire: str) -> bool:
    """Thinking blocks are kept only for the vendor that made them."""
    return not isinstance(part, Thinking) or part.origin == wire


def native_tools(tools: list[Tool], wire: str) -> list[dict[str, Any]]:
    """The vendor tools of this format; a vendor tool of another format cannot be expressed."""
    out = []
    for tool in tools:
        if tool.native is None:
            continue
        if tool.origin != wire:
            kind = tool.native.get("type") or tool.name or "?"
            raise Untranslatable(f"{wire}: the {tool.origin} tool {kind!r} has no equivalent in this format")
        out.append(tool.native)
    return out


def system_text(parts: list[Text]) -> str:
    return "\n\n".join(p.text for p in parts)


def fold_system(message: Message) -> Message:
    """A mid-conversation system message, for a format whose turns have no system role: it stays
    where it was, as a user turn the model can tell apart."""
    text = system_text([p for p in message.parts if isinstance(p, Text)])
    return Message("user", [Text(f"<system>\n{text}\n</system>")])


def merge_into(messages: list[Message], role: Literal["user", "assistant"], parts: list[Part]) -> None:
    """Append parts to the last message when it has the same role (formats that split one turn
    into several items or messages decode to one canonical message)."""
    if messages and messages[-1].role == role:
        messages[-1].parts.extend(parts)
    else:
        messages.append(Message(role, list(parts)))


# Codecs have no clock: OpenAI's `created` / `created_at` come out as 0, and whoever sends the
# answer stamps them (`stamp_created`). The compact key cannot occur inside a JSON string (its
# quotes would be escaped there).
_UNSTAMPED = (b'"created":0,', b'"created_at":0,')


def stamp_created(out: bytes, now: int) -> bytes:
    if b'":0,' not in out:
        return out
    stamp = str(now).encode()
    return out.replace(_UNSTAMPED[0], b'"created":' + stamp + b",").replace(
        _UNSTAMPED[1], b'"created_at":' + stamp + b","
    )


def response_events(response: ChatResponse, pieces: int = 4) -> list[StreamEvent]:
    """A whole answer as the canonical stream a provider would send: Start, each content block in
    `pieces` deltas (tool arguments in two), Finish. With a format's stream encoder, the one way to
    write an answer as a stream in any format (the fake provider and the test fakes use it)."""
    u = response.usage
    start = Usage(u.input_tokens, 0, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens)
    out: list[StreamEvent] = [Start(response.id, response.model, start)]
    for index, part in enumerate(response.content):
        if isinstance(part, Text):
            out.append(BlockStart(index, "text"))
            out.extend(TextDelta(index, piece) for piece in split_text(part.text, pieces))
        elif isinstance(part, ToolCall):
            out.append(BlockStart(index, "tool_call", call_id=part.id, name=part.name))
            out.extend(ToolArgsDelta(index, piece) for piece in split_text(part.arguments_json, 2))
        elif isinstance(part, Thinking):
            out.append(BlockStart(index, "thinking", redacted=part.redacted, origin=part.origin))
            out.append(ThinkingDelta(index, text=part.text, signature=part.signature or ""))
        else:
            continue
        out.append(BlockStop(index))
    out.append(Finish(response.stop_reason, response.usage, response.stop_sequence))
    return out


def split_text(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


class BlockTracker:
    """Turns a wire stream into canonical block events: numbers blocks 0, 1, ... in the order they
    open, closes the open block before another opens, and closes the last one before Finish."""

    def __init__(self) -> None:
        self.open_kind: str | None = None
        self.index = -1
        self.started = False
        self.finished = False
        self.tool_calls = 0

    def open(self, kind: Literal["text", "tool_call", "thinking"], **fields: Any) -> list[StreamEvent]:
        out = self.close()
        self.index += 1
        self.open_kind = kind
        if kind == "tool_call":
            self.tool_calls += 1
        out.append(BlockStart(self.index, kind, **fields))
        return out

    def ensure(self, kind: Literal["text", "thinking"], **fields: Any) -> list[StreamEvent]:
        return [] if self.open_kind == kind else self.open(kind, **fields)

    def close(self) -> list[StreamEvent]:
        if self.open_kind is None:
            return []
        self.open_kind = None
        return [BlockStop(self.index)]

    def finish(self, stop: StopReason, usage: Usage, stop_sequence: str | None = None) -> list[StreamEvent]:
        if self.finished:
            return []
        self.finished = True
        return [*self.close(), Finish(stop, usage, stop_sequence)]


class IndexMap:
    """Encoder side: which canonical blocks this format shows (foreign thinking is dropped) and
    the format's own index for each."""

    def __init__(self) -> None:
        self._own: dict[int, int] = {}
        self._next = 0

    def add(self, index: int) -> int:
        self._own[index] = self._next
        self._next += 1
        return self._own[index]

    def get(self, index: int) -> int | None:
        return self._own.get(index)


class JsonEventDecoder:
    """A stream decoder for formats whose SSE events each carry one JSON document (Gemini, the
    Responses API): a malformed event or a stream that stops early ends in a 502 Failure typed
    in the format's own words (`error_type`). Subclasses turn one document into events."""

    error_type = "server_error"

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._blocks = BlockTracker()

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for ev in self._sse.feed(chunk):
            if not ev.data or self._blocks.finished:
                continue
            doc = event_json(ev.data)
            if doc is None:
                self._blocks.finished = True
                return [*out, Failure(502, BAD_EVENT, self.error_type)]
            out.extend(self._event(doc))
        return out

    def close(self) -> list[StreamEvent]:
        if self._blocks.started and not self._blocks.finished:
            self._blocks.finished = True
            return [Failure(502, EARLY_END, self.error_type)]
        return []

    def _event(self, doc: dict[str, Any]) -> list[StreamEvent]:
        raise NotImplementedError


# --- values the target API limits ------------------------------------------------------------


def end_user_id(user: str | None, limit: int, allowed: re.Pattern[str] | None = None) -> str | None:
    """The caller's end-user id as the target accepts it: as it is when it fits, else a stable
    SHA-256 hex digest of it (Claude Code's `metadata.user_id` is a ~150-character JSON string;
    OpenAI refuses a `user` over 64 characters, Bedrock request metadata outside its pattern)."""
    if not user:
        return None
    if len(user) <= limit and (allowed is None or allowed.fullmatch(user)):
        return user
    return hashlib.sha256(user.encode()).hexdigest()[:limit]


_ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")


def safe_id(value: str, limit: int, prefix: str) -> str:
    """A tool-call id the target accepts (`[A-Za-z0-9_-]`, at most `limit` characters): as it is
    when it is one, else a stable hash, so a call and its result still name the same id."""
    if _ID_CHARS.fullmatch(value) and len(value) <= limit:
        return value
    return prefix + hashlib.sha256(value.encode()).hexdigest()[: limit - len(prefix)]


# --- another vendor's round-trip state, carried in the caller's format ----------------------
# A provider's signed reasoning (Anthropic thinking signatures, redacted thinking, Gemini thought
# signatures) must come back with the next turn, but the caller's format has no field for another
# vendor's blocks. Where the caller's format has an opaque field it sends back as it got it
# (Responses `encrypted_content`, Gemini `thoughtSignature`, a tool-call id), the blocks travel in
# it, sealed as "sluice1-" + base64url(JSON). The encoding is plain, not secret or authenticated:
# a caller could forge one, but the provider verifies its own signatures, so a forged block is
# refused there like any other bad signature.

SEALED = "sluice1-"
_ID_MARK = "__" + SEALED


def seal(blocks: list[Thinking]) -> str:
    raw = [{"o": b.origin, "t": b.text, "s": b.signature or "", "r": b.redacted} for b in blocks]
    return SEALED + base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


def unseal(value: str | None) -> list[Thinking] | None:
    """The blocks of a sealed value; None for anything else (the vendor's own opaque value)."""
    if not value or not value.startswith(SEALED):
        return None
    data = value[len(SEALED) :]
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(raw, list):
        return None
    out = []
    for item in raw:
        if isinstance(item, dict) and isinstance(item.get("o"), str) and isinstance(item.get("t"), str):
            signature = item.get("s") if isinstance(item.get("s"), str) and item.get("s") else None
            out.append(Thinking(item["t"], signature=signature, redacted=item.get("r") is True, origin=item["o"]))
    return out


def carried(blocks: list[Thinking]) -> list[Thinking]:
    """The blocks worth carrying: those with round-trip state (a signature, redacted data)."""
    return [b for b in blocks if b.signature or b.redacted]


def id_with(call_id: str, blocks: list[Thinking]) -> str:
    """A tool-call id carrying the reasoning blocks that came before the call."""
    return call_id + _ID_MARK + seal(blocks)[len(SEALED) :] if blocks else call_id


def id_without(value: str) -> tuple[str, list[Thinking]]:
    """(the provider's own call id, the blocks it carried) of an id made by `id_with`."""
    base, mark, rest = value.partition(_ID_MARK)
    if not mark:
        return value, []
    return base, unseal(SEALED + rest) or []


def unfold_calls(parts: list[Part]) -> list[Part]:
    """Parts decoded from a caller's history with carried blocks restored before their calls, and
    the calls and results under the provider's own ids again."""
    out: list[Part] = []
    anchor = 0  # after the last call: the blocks came before the text that precedes their call
    for part in parts:
        if isinstance(part, ToolCall):
            if _ID_MARK in part.id:
                part.id, blocks = id_without(part.id)
                out[anchor:anchor] = blocks
            anchor = len(out) + 1
        elif isinstance(part, ToolResult) and _ID_MARK in part.call_id:
            part.call_id = id_without(part.call_id)[0]
        out.append(part)
    return out


def carry_in_ids(parts: list[Part], wire: str) -> list[Part]:
    """An answer's parts for a caller's format that keeps only its own reasoning blocks: another
    vendor's signed blocks ride in the id of the tool call that follows them (Gemini 3 wants its
    thought signature back with the call; the caller sends the id back as it got it)."""
    out: list[Part] = []
    pending: list[Thinking] = []
    for part in parts:
        if isinstance(part, Thinking) and part.origin != wire:
            pending += carried([part])
        elif isinstance(part, ToolCall) and pending:
            out.append(ToolCall(id_with(part.id, pending), part.name, part.arguments_json))
            pending = []
        else:
            out.append(part)
    return out


def with_safe_ids(parts: list[Part], limit: int, prefix: str) -> list[Part]:
    """A request's parts with every call and result id made valid for the target (`safe_id`)."""
    out: list[Part] = []
    for part in parts:
        if isinstance(part, ToolCall):
            part = ToolCall(safe_id(part.id, limit, prefix), part.name, part.arguments_json)
        elif isinstance(part, ToolResult):
            part = ToolResult(safe_id(part.call_id, limit, prefix), part.content, part.is_error, part.name)
        out.append(part)
    return out
