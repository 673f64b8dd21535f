"""What every provider reached over HTTP shares: sending a body and shaping the reply."""

from __future__ import annotations

from collections.abc import Mapping

from sluice.providers.base import ProviderCall, ProviderError, ProviderKey, ProviderReply, error_by_status
from sluice.upstream.client import Timeouts, UpstreamClient

# Upstream response headers a caller may see; everything else stays in the gateway.
_PASSED_HEADERS = ("retry-after", "anthropic-ratelimit-requests-reset", "x-ratelimit-reset-requests")


class HttpProvider:
    type = "http"
    model_in_url = False  # the model travels in the request body

    def __init__(
        self,
        name: str,
        base_url: str,
        keys: list[ProviderKey],
        client: UpstreamClient,
        timeouts: Timeouts,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.keys = keys
        self.timeouts = timeouts
        self._client = client
        self._extra_headers = dict(extra_headers or {})

    async def _post(self, call: ProviderCall, url: str, headers: dict[str, str]) -> ProviderReply:
        headers.update(self._extra_headers)
        resp = await self._client.post(self.name, url, headers, call.body, self.timeouts)
        passed = {h: resp.headers[h] for h in _PASSED_HEADERS if h in resp.headers}
        content_type = resp.headers.get("content-type", "application/json")
        if call.stream and resp.status < 300:
            return ProviderReply(resp.status, content_type, passed, chunks=resp.iter_chunks())
        return ProviderReply(resp.status, content_type, passed, body=await resp.read())

    def parse_error(self, reply: ProviderReply, call: ProviderCall) -> ProviderError:
        # The body is in the format of the call (the provider's own API), so it can reach the caller.
        return error_by_status(self.name, reply, call.key, self.keys)


def secret_of(key: ProviderKey | None) -> str:
    return key.secret if key is not None else ""
