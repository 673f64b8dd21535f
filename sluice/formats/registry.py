"""THE registry of wire formats: `record_of(wire)` is what the gateway knows about a format (its
codec, stream reader, usage reader, error bodies and events, status mapping, counting, ...).

Adding a wire format: a `WireFormat` member (core/types.py), a package `formats/<wire>/` whose
`__init__` builds its `RECORD` (see `formats/record.py` for what a record holds, and any of the
packages here for a model), and its line below. Nothing outside `formats/` names a format to
decide how to treat it.
"""

from __future__ import annotations

from sluice.core.types import WireFormat
from sluice.formats import anthropic, bedrock_converse, gemini, openai_chat, openai_embeddings, openai_responses
from sluice.formats.record import WireRecord

_RECORDS: dict[WireFormat, WireRecord] = {
    r.wire: r
    for r in (
        anthropic.RECORD,
        openai_chat.RECORD,
        openai_responses.RECORD,
        openai_embeddings.RECORD,
        gemini.RECORD,
        bedrock_converse.RECORD,
    )
}
assert set(_RECORDS) == set(WireFormat), "every wire format has a record"


def record_of(wire: WireFormat) -> WireRecord:
    return _RECORDS[wire]
