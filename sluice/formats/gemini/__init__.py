"""Gemini API: `wire` (errors, usage, stream events, counting), `codec` (bodies <-> canonical),
`stream` (stream events <-> canonical), `fields` (proto JSON's two spellings)."""

from sluice.core.types import WireFormat
from sluice.formats import openai_common
from sluice.formats.gemini import wire
from sluice.formats.gemini.codec import GeminiCodec
from sluice.formats.record import GOVERNED_EVERYWHERE, Counting, WireRecord

RECORD = WireRecord(
    wire=WireFormat.GEMINI,
    codec=GeminiCodec(),
    reader=wire.READER,
    usage=wire.usage_of_answer,
    error_body=wire.error_body,
    error_event=wire.error_event,
    # Google's own API sends no rate-limit headers; its SDKs read none. OpenAI's are the common tongue.
    rate_limit_headers=openai_common.rate_limit_headers,
    counting=Counting(wire.count_request, wire.total_tokens, wire.count_answer, wire.count_inner),
    models_list=openai_common.models_list,
    statuses={529: 503},
    # https://ai.google.dev/api/generate-content#request-body (both proto JSON spellings): the content,
    # priced tools (grounding) and cached content (input billed by the provider).
    governed=GOVERNED_EVERYWHERE
    | {"contents", "systemInstruction", "system_instruction", "tools", "cachedContent", "cached_content"},
)

__all__ = ["RECORD"]
