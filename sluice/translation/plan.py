"""Which format a provider gets, and whether a caller's request can reach it."""

from __future__ import annotations

from typing import Any, Protocol

from sluice.core.canonical import ChatRequest, Untranslatable
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.formats.registry import record_of
from sluice.providers.base import Provider
from sluice.translation.bridge import Translation, codec, untranslatable


def request_wire(wire: WireFormat, doc: dict[str, Any]) -> WireFormat:
    """The format the caller's body is really in. Cursor's agent mode posts Responses-shaped bodies
    (`input`, flat tools) to /v1/chat/completions and reads Chat Completions back."""
    return record_of(wire).body_wire(doc) or wire


def target_of(
    provider: Provider, model: str, wire: WireFormat, operation: Operation, doc: dict[str, Any]
) -> tuple[WireFormat | None, bool]:
    """(the provider's format for this request, whether the body must be translated into it)."""
    spoken, source = provider.speaks(wire, operation, model), request_wire(wire, doc)
    if spoken and source is wire:
        return wire, False  # pass-through: the hot path
    if source is not wire and provider.speaks(source, operation, model):
        # Cursor's Responses-shaped body goes to a Responses endpoint as it is meant (its custom
        # tools survive); only the answer is translated back into Chat Completions.
        return source, True
    return (wire if spoken else provider.wire_for(model, operation)), True


def reaches(provider: Provider, model: str, wire: WireFormat, operation: Operation, doc: dict[str, Any]) -> bool:
    target, translate = target_of(provider, model, wire, operation, doc)
    return not translate or reachable(request_wire(wire, doc), target, operation)


class Inbound(Protocol):
    wire: WireFormat
    operation: Operation
    doc: dict[str, Any]
    model: str | None


def bridge_for(
    provider: Provider, model: str, inbound: Inbound, canonical: ChatRequest | None
) -> tuple[WireFormat | None, Translation | None, ChatRequest | None]:
    """(target format, translation or None for pass-through, the canonical request decoded once
    per request). A None target is a token count the provider cannot make (see `local_count`)."""
    target, translate = target_of(provider, model, inbound.wire, inbound.operation, inbound.doc)
    if not translate:
        return target, None, canonical
    source = request_wire(inbound.wire, inbound.doc)
    if source is target and source is not inbound.wire:
        # Cursor's Responses body to a Responses provider: sent as it came (nothing it asks for is
        # lost, stored-state fields included); the canonical request only guides the answer.
        guide = _answer_guide(inbound.doc, inbound.wire)
        return target, Translation(inbound.wire, target, inbound.operation, guide, raw=inbound.doc), canonical
    if canonical is None:
        canonical = decode(source, inbound.operation, inbound.doc, inbound.model)
    if target is None:
        return None, None, canonical
    return target, Translation(inbound.wire, target, inbound.operation, canonical), canonical


def _answer_guide(doc: dict[str, Any], answer: WireFormat) -> ChatRequest:
    """What the answer's encoder reads of a request it did not decode: model, streaming, and the
    caller's stream options (Cursor asks Chat's include_usage, and gets it)."""
    model, options = doc.get("model"), doc.get("stream_options")
    extra = {answer.value: {"stream_options": options}} if isinstance(options, dict) else {}
    return ChatRequest(model=str(model or ""), messages=[], stream=doc.get("stream") is True, extra=extra)


def reachable(source: WireFormat, target: WireFormat | None, operation: Operation) -> bool:
    """Whether a caller of `source` can reach a provider that takes `target`, by translation."""
    if operation not in (Operation.GENERATE, Operation.COUNT_TOKENS) or codec(source) is None:
        return False
    if target is None:
        return operation is Operation.COUNT_TOKENS  # a provider that cannot count gets an estimate
    return codec(target) is not None


def decode(wire: WireFormat, operation: Operation, doc: dict[str, Any], model: str | None) -> ChatRequest:
    """The caller's request, canonical. Raises a 400 in the caller's terms when it cannot be read."""
    found = codec(wire)
    if found is None:
        raise SluiceError(ErrorKind.GATEWAY_UNSUPPORTED, f"Requests in the {wire.value} format cannot be translated.")
    if operation is Operation.COUNT_TOKENS:
        doc = record_of(wire).counting.inner(doc)  # a counting body may wrap the generation request
    try:
        return found.decode_request(doc, model)
    except Untranslatable as exc:
        raise untranslatable(wire, None, str(exc)) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # A malformed body (a string where a list belongs): the caller's mistake, said as a 400.
        raise SluiceError(
            ErrorKind.CALLER_BAD_REQUEST, f"The request is not a valid {wire.value} request: {exc!r}"
        ) from None
