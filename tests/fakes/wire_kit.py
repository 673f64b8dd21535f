"""The pieces every fake wire format of the test upstream shares: ids, JSON and SSE rendering, byte templates with
slots, chunking, and reading what a request asks for (echo text, tool input, embeddings)."""

import base64
import copy
import hashlib
import json
import random
import re
import secrets
import string
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

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


def _named_in(tools: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """The tool the prompt names (the longest name found in it), else the first tool."""
    named = [t for t in tools if t["name"] in text]
    return max(named, key=lambda t: len(t["name"])) if named else tools[0]


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
