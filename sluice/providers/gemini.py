"""Gemini API (Google AI Studio) provider: the model travels in the URL, the key in
`x-goog-api-key`."""

from __future__ import annotations

from urllib.parse import quote

from sluice.core.types import Operation, WireFormat
from sluice.providers.base import ProviderCall, ProviderReply, join_url
from sluice.providers.http_provider import HttpProvider, secret_of

_METHODS = {Operation.GENERATE: "generateContent", Operation.COUNT_TOKENS: "countTokens"}


class GeminiProvider(HttpProvider):
    type = "gemini"
    model_in_url = True

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return wire is WireFormat.GEMINI and operation in _METHODS

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        return WireFormat.GEMINI if operation in _METHODS else None

    def serves(self, model: str) -> bool:
        return model.startswith(("gemini", "gemma", "learnlm"))

    async def send(self, call: ProviderCall) -> ProviderReply:
        method = _METHODS[call.operation]
        if call.stream:
            method, query = "streamGenerateContent", "alt=sse"
        else:
            query = ""
        url = join_url(self.base_url, f"/v1beta/models/{quote(call.model, safe='')}:{method}", query)
        headers = {"content-type": "application/json", "x-goog-api-key": secret_of(call.key)}
        return await self._post(call, url, headers)
