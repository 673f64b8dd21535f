"""OpenAI Chat Completions and Embeddings, and every OpenAI-compatible vendor (they differ only
in base URL, which is data in `sluice.settings`)."""

from __future__ import annotations

from sluice.core.types import Operation, WireFormat
from sluice.providers.base import ProviderCall, ProviderReply, join_url
from sluice.providers.http_provider import HttpProvider, secret_of

_PATHS = {
    (WireFormat.OPENAI_CHAT, Operation.GENERATE): "/chat/completions",
    (WireFormat.OPENAI_EMBEDDINGS, Operation.EMBED): "/embeddings",
    (WireFormat.OPENAI_RESPONSES, Operation.GENERATE): "/responses",
    (WireFormat.OPENAI_RESPONSES, Operation.COUNT_TOKENS): "/responses/input_tokens",
}
_OPENAI_PREFIXES = ("gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-", "codex-", "omni-")


class OpenAIProvider(HttpProvider):
    type = "openai"

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return (wire, operation) in _PATHS

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        # Chat Completions is what every model of the API takes; Responses is where OpenAI counts.
        if operation is Operation.GENERATE:
            return WireFormat.OPENAI_CHAT
        return WireFormat.OPENAI_RESPONSES if operation is Operation.COUNT_TOKENS else None

    def serves(self, model: str) -> bool:
        return model.startswith(_OPENAI_PREFIXES)

    async def send(self, call: ProviderCall) -> ProviderReply:
        headers = {"content-type": "application/json"}
        secret = secret_of(call.key)
        if secret:
            headers["authorization"] = f"Bearer {secret}"
        url = join_url(self.base_url, _PATHS[(call.wire, call.operation)])
        return await self._post(call, url, headers)


class OpenAICompatibleProvider(OpenAIProvider):
    type = "openai_compatible"

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        # Vendors and self-hosted servers implement Chat Completions; few count tokens.
        return WireFormat.OPENAI_CHAT if operation is Operation.GENERATE else None

    def serves(self, model: str) -> bool:
        # A self-hosted or vendor endpoint may serve any model name; allowlists decide.
        return True
