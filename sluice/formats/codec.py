"""The contract every wire format's translator keeps (one module per format, `formats/<wire>.py`
or a sibling `formats/<wire>_codec.py` when the observer module is already large).

A codec is pure: no I/O, no logging, no clock. `decode_*` turns the format's JSON into canonical
types (`sluice.core.canonical`), `encode_*` turns canonical types into the format's JSON. What a
format cannot express raises `Untranslatable` with a message naming the field.
"""

from __future__ import annotations

from typing import Any, Protocol

from sluice.core.canonical import ChatRequest, ChatResponse, Failure, StreamEvent
from sluice.core.types import WireFormat
from sluice.formats.tool_names import NameRule


class StreamDecoder(Protocol):
    def feed(self, chunk: bytes) -> list[StreamEvent]:
        """Events completed by `chunk` (chunks may split events anywhere)."""
        ...

    def close(self) -> list[StreamEvent]:
        """Events still owed once the upstream stream ended (e.g. a Finish the format implies)."""
        ...


class StreamEncoder(Protocol):
    content_type: str

    def encode(self, event: StreamEvent) -> bytes:
        """The bytes to send for `event` (may be b"" when the format has nothing to say yet)."""
        ...

    def close(self) -> bytes:
        """Trailer owed at the end of the stream (e.g. `data: [DONE]`)."""
        ...


class Codec(Protocol):
    wire: WireFormat
    # What the format accepts as a function name. A request's tool names are the caller's; the
    # bridge gives the target valid ones (`tool_names.for_target`) and maps an answer's back.
    tool_names: NameRule

    def decode_request(self, doc: dict[str, Any], model: str | None = None) -> ChatRequest:
        """`model` comes from the URL for formats that carry it there (Gemini, Bedrock)."""
        ...

    def encode_request(self, request: ChatRequest) -> dict[str, Any]: ...

    def decode_response(self, doc: dict[str, Any]) -> ChatResponse: ...

    def encode_response(self, response: ChatResponse, request: ChatRequest | None = None) -> dict[str, Any]:
        """`request` is the caller's request, when known: what the answer refers back to (the
        Responses API's namespaced tool names)."""
        ...

    def decode_error(self, status: int, body: bytes) -> Failure: ...

    def stream_decoder(self) -> StreamDecoder: ...

    def stream_encoder(self, request: ChatRequest) -> StreamEncoder: ...
