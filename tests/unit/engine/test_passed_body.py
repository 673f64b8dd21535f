"""The body a request passes on in its own format: the caller's bytes, unless the model changed
or the format's stream rules change it, and never the caller's parsed body mutated in place."""

from __future__ import annotations

import orjson

from sluice.core.types import Operation, WireFormat
from sluice.engine.attempt import _passed_body
from sluice.engine.shapes import Inbound


def _inbound(wire: WireFormat, doc: dict[str, object]) -> Inbound:
    return Inbound(wire, Operation.GENERATE, orjson.dumps(doc), doc, {})


def test_unchanged_body_passes_as_the_callers_bytes() -> None:
    inbound = _inbound(WireFormat.ANTHROPIC_MESSAGES, {"model": "m", "stream": True, "messages": []})
    body, doc, hide = _passed_body(inbound, "m", True)
    assert body is inbound.body and doc is inbound.doc and not hide


def test_chat_stream_asks_for_usage_and_hides_it_without_touching_the_callers_doc() -> None:
    inbound = _inbound(WireFormat.OPENAI_CHAT, {"model": "m", "stream": True, "messages": []})
    body, _, hide = _passed_body(inbound, "m", True)
    assert hide and orjson.loads(body)["stream_options"] == {"include_usage": True}
    assert "stream_options" not in inbound.doc  # a retry on another target starts from the caller's body


def test_chat_stream_that_asked_for_usage_keeps_it() -> None:
    inbound = _inbound(
        WireFormat.OPENAI_CHAT, {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
    )
    body, _, hide = _passed_body(inbound, "m", True)
    assert body is inbound.body and not hide


def test_responses_body_loses_chats_include_usage_which_its_api_refuses() -> None:
    doc = {"model": "m", "stream": True, "input": "hi", "stream_options": {"include_usage": True}}
    inbound = _inbound(WireFormat.OPENAI_RESPONSES, doc)
    body, _, hide = _passed_body(inbound, "m", True)
    assert "stream_options" not in orjson.loads(body) and not hide
    assert inbound.doc["stream_options"] == {"include_usage": True}


def test_a_changed_model_is_written_into_a_copy() -> None:
    inbound = _inbound(WireFormat.OPENAI_CHAT, {"model": "alias", "messages": []})
    body, _, _ = _passed_body(inbound, "real", False)
    assert orjson.loads(body)["model"] == "real" and inbound.doc["model"] == "alias"
