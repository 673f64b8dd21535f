"""What the gateway knows about one wire format, in one record (`WireRecord`).

Each format's package (`formats/<wire>/__init__.py`) builds its `RECORD`; `formats/registry.py`
lists them and `record_of(wire)` is the one lookup the rest of the gateway makes. Code outside
`formats/` asks the record instead of comparing wire formats: adding a format is adding a package
and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from sluice.core.errors import ErrorKind
from sluice.core.types import Usage, WireFormat
from sluice.formats.codec import Codec

Event = TypeVar("Event")


class Seen(Protocol):
    """What a stream's reader records (the one `formats.observer.StreamObserver` is one)."""

    usage: Usage
    error: str | None
    completed: bool
    count_output: bool  # measure the generated text (budget cut-offs)
    output_chars: int
    captured: list[str] | None  # keep the generated text too (audit content capture)


@dataclass(frozen=True, slots=True)
class EventReader(Generic[Event]):
    """What a format's stream events mean for metering, for the one `StreamObserver`.

    `splitter()` makes a fresh incremental splitter of chunks into complete events (raw SSE blocks,
    event-stream frames); `read(event, seen)` records what one event says (usage, completion,
    generated text when `seen.count_output`, an in-stream error) and returns True for an event
    to take out of the stream (only the OpenAI Chat usage chunk the gateway asked for)."""

    splitter: Callable[[], Callable[[bytes], Sequence[Event]]]
    read: Callable[[Event, Seen], bool]
    sse: bool = True  # events are SSE blocks (dropped ones are re-joined with a blank line)
    # Prefixes of SSE events that say nothing but generated text (the bulk of a stream): not read
    # at all unless the generated text is measured (`count_output`).
    quiet: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Counting:
    """Token counting in a format: the counting request made from a generation body, the count in
    the counting answer, the counting answer the format's callers expect, and the generation
    request inside a counting body."""

    request: Callable[[dict[str, Any], str], dict[str, Any]]
    count: Callable[[dict[str, Any]], object]
    answer: Callable[[int], dict[str, Any]]
    inner: Callable[[dict[str, Any]], dict[str, Any]] = lambda doc: doc


class Prepared(NamedTuple):
    changed: bool  # the body changed (re-encode it)
    hide_usage: bool  # it now asks for usage the caller did not ask for: take the extra chunk out again


UNCHANGED = Prepared(False, False)


def _no_stream_change(doc: dict[str, Any], stream: bool) -> Prepared:
    return UNCHANGED


_EMPTY: Mapping[Any, Any] = MappingProxyType({})

# Top-level fields governance reads on every surface (the model, streaming, and every spelling of an
# output limit and of a choice count that pricing.demand reserves for, since an OpenAI-compatible
# upstream may honour a spelling its own API does not document). See `WireRecord.governed`.
GOVERNED_EVERYWHERE = frozenset(
    (
        "model", "stream", "max_tokens", "max_completion_tokens", "max_output_tokens", "maxOutputTokens", "n",
        "generationConfig", "generation_config", "inferenceConfig",
    )
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class WireRecord:
    wire: WireFormat
    codec: Codec | None  # None: the format is passed through only, never translated (embeddings)
    reader: EventReader[Any]  # what its stream events mean (sluice.formats.observer drives it)
    usage: Callable[[dict[str, Any]], Usage]  # the usage of a whole answer, parsed
    # (status, message, machine-readable code or None, request id) -> the format's error body
    error_body: Callable[[int, str, str | None, str], bytes]
    # (status, message, code) -> the in-stream error event, once the stream's headers went out
    error_event: Callable[[int, str, str | None], bytes]
    # (measure, limit, remaining, reset time ISO 8601, retry-after seconds) -> its clients' rate-limit headers
    rate_limit_headers: Callable[[str, str, str, str, float | None], dict[str, str]]
    counting: Counting
    # (answer's `data`: model ids, providers) -> GET /v1/models in this format's shape
    models_list: Callable[[list[str], set[str]], dict[str, object]]
    # Statuses the format's clients do not know -> the one they do (Anthropic's 529 elsewhere is 503).
    statuses: Mapping[int, int] = field(default_factory=lambda: _EMPTY)
    # Error kinds the format's clients must be told differently: kind -> (status, code).
    refusals: Mapping[ErrorKind, tuple[int, str]] = field(default_factory=lambda: _EMPTY)
    answer_id_prefix: str = ""  # what the format's answer ids start with, for an answer that has none
    # (provider's request body, streamed?) -> the body made meterable when streamed (OpenAI Chat sends
    # usage only when asked) and acceptable (the Responses API refuses Chat's `include_usage`), in place.
    prepare_stream: Callable[[dict[str, Any], bool], Prepared] = _no_stream_change
    # Whether a body posted to this format's surface is really in another format (Cursor posts
    # Responses bodies to Chat Completions): that format, or None.
    body_wire: Callable[[dict[str, Any]], WireFormat | None] = lambda doc: None
    # The top-level fields of a body in this format that governance and guardrails read and its
    # providers act on (the model, output limits, priced options, the content guardrails scan). A
    # body naming one twice is re-encoded from the parsed value (sluice.http.sole_keys), so the
    # provider gets exactly what was allowed, priced and scanned. A name that the format's bodies
    # also nest as a key often (Anthropic's `tool_use.input`) is kept out unless it is its own.
    governed: frozenset[str] = GOVERNED_EVERYWHERE

    def status(self, status: int) -> int:
        return self.statuses.get(status, status)
