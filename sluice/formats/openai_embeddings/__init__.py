"""OpenAI Embeddings (https://platform.openai.com/docs/api-reference/embeddings): passed through
only (no codec: no other format embeds), never streamed; errors and usage are OpenAI's own."""

from __future__ import annotations

from typing import Any

from sluice.core.types import Usage, WireFormat
from sluice.formats import openai_common
from sluice.formats.record import GOVERNED_EVERYWHERE, Counting, EventReader, Seen, WireRecord
from sluice.formats.sse import SSEDecoder, encode


def answer(model: str, vectors: list[list[float]], usage: Usage) -> dict[str, Any]:
    """An embeddings answer: one vector per input, in order."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }


def _read_nothing(block: bytes, seen: Seen) -> bool:
    return False  # embeddings do not stream: nothing in a stream is theirs to read


def _splitter() -> Any:
    return SSEDecoder().feed_blocks


RECORD = WireRecord(
    wire=WireFormat.OPENAI_EMBEDDINGS,
    codec=None,
    reader=EventReader(_splitter, _read_nothing),
    usage=openai_common.usage_of_answer,
    error_body=openai_common.error_body,
    error_event=lambda status, message, code: encode(openai_common.error_body(status, message, code)),
    rate_limit_headers=openai_common.rate_limit_headers,
    counting=Counting(lambda doc, model: doc, openai_common.input_tokens, openai_common.count_answer),
    models_list=openai_common.models_list,
    statuses={529: 503},
    # https://platform.openai.com/docs/api-reference/embeddings/create: what is embedded (and billed).
    governed=GOVERNED_EVERYWHERE | {"input"},
)
