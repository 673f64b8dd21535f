"""The canonical conversation: what every wire format translates to and from.

Pass-through needs none of this: bodies go through untouched when the inbound surface and the
provider speak the same format. When they do not, `formats/<wire>.py` decodes the caller's body
into these types and the provider's format encodes them again, and the answer (whole or streamed)
travels back the same way. Anything a format cannot carry raises `Untranslatable` (a clear 400),
never a silent loss.

Conventions every codec keeps:
- Tool-call arguments travel as the JSON text the model produced (`arguments_json`), so a codec
  never re-serialises (and never reorders or corrupts) them.
- Thinking blocks keep the wire format they came from (`origin`): a signature is only valid for
  the vendor that made it, so a request codec for another vendor drops them rather than forward a
  block the target would reject. An answer's codec for another format carries the signed ones to
  the caller in a field it sends back (codec_support.seal), so the next turn restores them.
- Unknown optional fields of a request go in `extra`, keyed by their wire format; a codec reads
  only the extras of its own format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sluice.core.types import Usage

Role = Literal["system", "user", "assistant"]
StopReason = Literal["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal", "pause_turn", "error"]


class Untranslatable(ValueError):
    """The request (or answer) uses something the target format cannot express."""


# --- content parts -------------------------------------------------------------------------


@dataclass(slots=True)
class Text:
    text: str
    cache: bool = False  # an Anthropic cache_control breakpoint sits on this part


@dataclass(slots=True)
class Image:
    media_type: str  # e.g. image/png; "" when only a URL is known
    data: str | None = None  # base64, without a data: prefix
    url: str | None = None


@dataclass(slots=True)
class Document:
    """A file (PDF, plain text) sent as input."""

    media_type: str
    data: str | None = None  # base64
    url: str | None = None
    name: str | None = None


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments_json: str  # the JSON text of the arguments, exactly as produced


@dataclass(slots=True)
class ToolResult:
    call_id: str
    content: list[Text | Image | Document]
    is_error: bool = False
    name: str | None = None  # Gemini answers by function name, not id


@dataclass(slots=True)
class Thinking:
    text: str
    signature: str | None = None  # vendor-specific proof; valid only in `origin`
    redacted: bool = False  # Anthropic redacted_thinking: `text` then holds the opaque data
    origin: str = ""  # the WireFormat value the block came from


Part = Text | Image | Document | ToolCall | ToolResult | Thinking


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


@dataclass(slots=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    # A vendor tool with no function schema (an Anthropic server tool, Responses `local_shell` or
    # `web_search`, Gemini `googleSearch`): its wire JSON, valid only in `origin`. The codec of
    # another format raises Untranslatable rather than drop a capability silently.
    native: dict[str, Any] | None = None
    origin: str = ""  # the WireFormat value `native` belongs to
    # A vendor tool the model can go without (a hosted web search among an agent's tools): a target
    # that cannot run it gets the request without it, and the drop is recorded, instead of a refusal.
    optional: bool = False
    # A function declared inside a group (a Responses `namespace` tool): (group, its own name).
    # `name` is then the flattened name every other format sees (made valid for each target like
    # any tool name, formats/tool_names.py), and calls to it go back to the caller's format under
    # the group's name again.
    namespaced: tuple[str, str] | None = None
    # A Responses `custom` tool (freeform: the model writes one text, e.g. a patch): its `format`
    # ({} when none). Other formats see a function of one string argument, `input`.
    freeform: dict[str, Any] | None = None


@dataclass(slots=True)
class ToolChoice:
    mode: Literal["auto", "none", "any", "tool"] = "auto"
    name: str | None = None  # with mode "tool"
    parallel: bool | None = None  # None: the target's default


@dataclass(slots=True)
class Reasoning:
    effort: Literal["minimal", "low", "medium", "high"] | None = None
    budget_tokens: int | None = None
    summary: bool = False  # ask for a reasoning summary where the target offers one


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]  # system messages in mid-conversation stay where they are
    system: list[Text] = field(default_factory=list)  # the leading system prompt
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    reasoning: Reasoning | None = None
    response_format: dict[str, Any] | None = None  # JSON schema output: {"type": "json_schema", ...}
    user: str | None = None  # the caller's end-user id, for the provider's abuse monitoring
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # wire format -> its own fields


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    content: list[Part]  # Text, ToolCall and Thinking
    stop_reason: StopReason = "end_turn"
    stop_sequence: str | None = None
    usage: Usage = field(default_factory=Usage)


# --- stream events ---------------------------------------------------------------------------
# A stream is: Start, then for each content block BlockStart, deltas, BlockStop (blocks never
# interleave their deltas once decoded), then Finish; Failure may come at any point instead.


@dataclass(slots=True)
class Start:
    id: str
    model: str
    usage: Usage = field(default_factory=Usage)  # input usage, when the format says it up front


@dataclass(slots=True)
class BlockStart:
    index: int
    kind: Literal["text", "tool_call", "thinking"]
    call_id: str = ""  # tool_call
    name: str = ""  # tool_call
    redacted: bool = False  # thinking
    origin: str = ""  # thinking


@dataclass(slots=True)
class TextDelta:
    index: int
    text: str


@dataclass(slots=True)
class ToolArgsDelta:
    index: int
    json: str  # a fragment of the arguments' JSON text


@dataclass(slots=True)
class ThinkingDelta:
    index: int
    text: str = ""
    signature: str = ""


@dataclass(slots=True)
class BlockStop:
    index: int


@dataclass(slots=True)
class Finish:
    stop_reason: StopReason
    usage: Usage
    stop_sequence: str | None = None


@dataclass(slots=True)
class Failure:
    """An in-stream error from the provider (or the gateway)."""

    status: int  # the HTTP status the error would have had
    message: str
    type: str = ""  # the vendor's error type, when known


StreamEvent = Start | BlockStart | TextDelta | ToolArgsDelta | ThinkingDelta | BlockStop | Finish | Failure
