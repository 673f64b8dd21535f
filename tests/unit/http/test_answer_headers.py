"""The inference edge encodes an answer's headers in one list (sluice.http.inference)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.core.context import RequestRecord
from sluice.core.types import Operation, WireFormat
from sluice.engine.context import RequestContext
from sluice.engine.shapes import Outcome
from sluice.http.asgi import encode_headers
from sluice.http.inference import _STREAM_HEADERS, InferenceRoute

_names = st.sampled_from(["retry-after", "x-request-id", "cache-control", "x-sluice-route", "x-accel-buffering", "a"])
_headers = st.dictionaries(_names, st.text(alphabet="abc-123 ", max_size=8), max_size=5)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_headers, st.booleans())
def test_the_encoded_headers_are_those_of_the_merged_dict(headers: dict[str, str], stream: bool) -> None:
    ctx = RequestContext(RequestRecord("req_1", WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE, "/v1/messages"))
    outcome = Outcome(200, "text/event-stream", dict(headers))
    extra = _STREAM_HEADERS if stream else ()
    expected = encode_headers(outcome.content_type, {**headers, "x-request-id": "req_1", **dict(extra)})
    assert InferenceRoute._head(ctx, outcome, outcome.content_type, extra) == expected
    assert outcome.headers == headers  # the outcome's own headers are left as they were
