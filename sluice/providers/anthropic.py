"""Anthropic Messages API provider."""

from __future__ import annotations

from sluice.core.types import Operation, WireFormat
from sluice.providers.base import ProviderCall, ProviderReply, join_url
from sluice.providers.http_provider import HttpProvider, secret_of

DEFAULT_VERSION = "2023-06-01"
_PATHS = {Operation.GENERATE: "/v1/messages", Operation.COUNT_TOKENS: "/v1/messages/count_tokens"}


def forwarded_query(query: str) -> str:
    """What of the caller's query string reaches Anthropic: the one parameter its Messages API
    takes (`beta=true`, which the SDK's beta client and Claude Code send). Any other parameter a
    caller adds stays in the gateway, so a caller never shapes the upstream URL."""
    return "beta=true" if "beta=true" in query.split("&") else ""


class AnthropicProvider(HttpProvider):
    type = "anthropic"

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return wire is WireFormat.ANTHROPIC_MESSAGES and operation in _PATHS

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        return WireFormat.ANTHROPIC_MESSAGES if operation in _PATHS else None

    def serves(self, model: str) -> bool:
        return model.startswith("claude")

    async def send(self, call: ProviderCall) -> ProviderReply:
        headers = {
            "content-type": "application/json",
            "x-api-key": secret_of(call.key),
            "anthropic-version": call.inbound_headers.get("anthropic-version", DEFAULT_VERSION),
        }
        beta = call.inbound_headers.get("anthropic-beta")
        if beta:
            headers["anthropic-beta"] = beta
        url = join_url(self.base_url, _PATHS[call.operation], forwarded_query(call.query))
        return await self._post(call, url, headers)
