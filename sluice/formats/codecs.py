"""The codec of each wire format that has one: `codec_for(wire)`."""

from __future__ import annotations

from sluice.core.types import WireFormat
from sluice.formats.anthropic_codec import AnthropicCodec
from sluice.formats.codec import Codec
from sluice.formats.gemini_codec import GeminiCodec
from sluice.formats.openai_chat_codec import OpenAIChatCodec
from sluice.formats.openai_responses_codec import OpenAIResponsesCodec

_CODECS: dict[WireFormat, Codec] = {
    WireFormat.ANTHROPIC_MESSAGES: AnthropicCodec(),
    WireFormat.OPENAI_CHAT: OpenAIChatCodec(),
    WireFormat.OPENAI_RESPONSES: OpenAIResponsesCodec(),
    WireFormat.GEMINI: GeminiCodec(),
}


def codec_for(wire: WireFormat) -> Codec:
    """Raises KeyError for a format without a codec (embeddings, Bedrock for now)."""
    return _CODECS[wire]
