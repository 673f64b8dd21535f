"""OpenAI Responses API: `wire` (usage, stream events, in-stream error), `codec` (bodies <->
canonical), `stream` (stream events <-> canonical), `tools` (its tool kinds)."""

from sluice.core.errors import ErrorKind
from sluice.core.types import WireFormat
from sluice.formats import openai_common
from sluice.formats.openai_responses import wire
from sluice.formats.openai_responses.codec import OpenAIResponsesCodec
from sluice.formats.record import GOVERNED_EVERYWHERE, Counting, WireRecord

RECORD = WireRecord(
    wire=WireFormat.OPENAI_RESPONSES,
    codec=OpenAIResponsesCodec(),
    reader=wire.READER,
    usage=wire.usage_of_response,
    error_body=openai_common.error_body,
    error_event=wire.error_event,
    rate_limit_headers=openai_common.rate_limit_headers,
    counting=Counting(wire.count_request, openai_common.input_tokens, wire.count_answer),
    models_list=openai_common.models_list,
    statuses={529: 503},
    # Codex CLI retries a 402 five times but stops at once on 429 insufficient_quota.
    refusals={ErrorKind.POLICY_BUDGET_EXCEEDED: (429, "insufficient_quota")},
    answer_id_prefix="resp_",
    prepare_stream=wire.prepare_stream,
    # https://platform.openai.com/docs/api-reference/responses/create: the content (`input`,
    # `instructions`), priced tools, and input stored at OpenAI (billed as this request's input).
    governed=GOVERNED_EVERYWHERE
    | {"input", "instructions", "tools", "prompt", "previous_response_id", "conversation", "background"}
    | {"max_tool_calls", "service_tier"},
)

__all__ = ["RECORD"]
