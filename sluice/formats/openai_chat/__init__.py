"""OpenAI Chat Completions: `wire` (stream events, in-stream error, stream request changes),
`codec` (bodies <-> canonical), `stream` (stream events <-> canonical)."""

from sluice.core.types import WireFormat
from sluice.formats import openai_common
from sluice.formats.openai_chat import wire
from sluice.formats.openai_chat.codec import OpenAIChatCodec
from sluice.formats.record import GOVERNED_EVERYWHERE, Counting, WireRecord

RECORD = WireRecord(
    wire=WireFormat.OPENAI_CHAT,
    codec=OpenAIChatCodec(),
    reader=wire.READER,
    usage=openai_common.usage_of_answer,
    error_body=openai_common.error_body,
    error_event=wire.error_event,
    rate_limit_headers=openai_common.rate_limit_headers,
    counting=Counting(lambda doc, model: doc, openai_common.input_tokens, openai_common.count_answer),
    models_list=openai_common.models_list,
    statuses={529: 503},  # 529 is Anthropic's own; OpenAI's clients know 503
    answer_id_prefix="chatcmpl-",
    prepare_stream=wire.prepare_stream,
    body_wire=wire.body_wire,
    # https://platform.openai.com/docs/api-reference/chat/create: `messages`, priced `tools` and
    # options; and the Responses fields, since a Responses body posted here is served as one (body_wire).
    governed=GOVERNED_EVERYWHERE
    | {"messages", "tools", "service_tier", "web_search_options"}
    | {"input", "instructions", "prompt", "previous_response_id", "conversation", "background", "max_tool_calls"},
)

__all__ = ["RECORD"]
