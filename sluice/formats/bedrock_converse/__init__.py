"""Bedrock Converse: `wire` (usage, stream frames, errors), `codec` (bodies <-> canonical),
`stream` (event-stream frames <-> canonical)."""

from sluice.core.types import WireFormat
from sluice.formats import openai_common
from sluice.formats.bedrock_converse import wire
from sluice.formats.bedrock_converse.codec import CODEC
from sluice.formats.record import GOVERNED_EVERYWHERE, Counting, WireRecord

RECORD = WireRecord(
    wire=WireFormat.BEDROCK_CONVERSE,
    codec=CODEC,
    reader=wire.READER,
    usage=wire.usage_of_answer,
    error_body=wire.error_body,
    error_event=wire.error_event,
    rate_limit_headers=openai_common.rate_limit_headers,
    counting=Counting(lambda doc, model: doc, openai_common.input_tokens, openai_common.count_answer),
    models_list=openai_common.models_list,
    statuses={529: 503},
    # https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html: the content,
    # and the model's own fields (Anthropic's thinking budget on Bedrock is one).
    governed=GOVERNED_EVERYWHERE | {"messages", "system", "additionalModelRequestFields"},
)

__all__ = ["RECORD"]
