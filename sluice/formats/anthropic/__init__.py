"""Anthropic Messages: `wire` (errors, usage, stream events, rate-limit headers, models list,
counting), `codec` (bodies <-> canonical), `stream` (stream events <-> canonical), `invoke` (its
streams inside Bedrock InvokeModel event-stream frames)."""

from sluice.core.types import WireFormat
from sluice.formats.anthropic import wire
from sluice.formats.anthropic.codec import AnthropicCodec
from sluice.formats.record import GOVERNED_EVERYWHERE, Counting, WireRecord

RECORD = WireRecord(
    wire=WireFormat.ANTHROPIC_MESSAGES,
    codec=AnthropicCodec(),
    reader=wire.READER,
    usage=wire.usage_of_answer,
    error_body=wire.error_body,
    error_event=wire.error_event,
    rate_limit_headers=wire.rate_limit_headers,
    counting=Counting(wire.count_request, wire.input_tokens, wire.count_answer),
    models_list=wire.models_list,
    answer_id_prefix="msg_",
    # https://docs.anthropic.com/en/api/messages: the content (`messages`, `system`), server tools
    # that are priced per use (`tools`), and the priced options. `thinking` is left out: its
    # `budget_tokens` counts within `max_tokens` (governed), and Claude Code's thinking blocks nest it.
    governed=GOVERNED_EVERYWHERE | {"messages", "system", "tools", "service_tier", "speed"},
)

__all__ = ["RECORD"]
