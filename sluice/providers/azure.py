"""Azure OpenAI: OpenAI's Chat Completions, Responses and Embeddings behind Azure's URLs.

Two URL schemes, chosen by `api_version`:
- unset or `v1`: the v1 API, `{base}/openai/v1/chat/completions` (`/responses`, `/embeddings`),
  where the body's `model` is the deployment name;
- a dated version (`2024-10-21`): `{base}/openai/deployments/{deployment}/chat/completions
  ?api-version=...` (and `/embeddings`); Responses has no deployment form and goes to
  `{base}/openai/responses?api-version=...` with the deployment as `model`.

`deployments` maps the model name callers use to the deployment's name (unmapped names are taken
as deployment names). Keys go in the `api-key` header, or as `Authorization: Bearer` when
`auth: bearer` (a Microsoft Entra ID token).
"""

from __future__ import annotations

from urllib.parse import quote

from sluice.core.types import Operation, WireFormat
from sluice.formats.json_body import encode_body
from sluice.providers.base import ProviderCall, ProviderKey, ProviderReply
from sluice.providers.http_provider import HttpProvider, secret_of
from sluice.settings import ProviderConfig
from sluice.upstream.client import Timeouts, UpstreamClient

_PATHS = {
    (WireFormat.OPENAI_CHAT, Operation.GENERATE): "/chat/completions",
    (WireFormat.OPENAI_EMBEDDINGS, Operation.EMBED): "/embeddings",
    (WireFormat.OPENAI_RESPONSES, Operation.GENERATE): "/responses",
}


class AzureProvider(HttpProvider):
    type = "azure"
    model_in_url = True  # the deployment, with a dated api_version

    def __init__(self, name: str, cfg: ProviderConfig, client: UpstreamClient, timeouts: Timeouts) -> None:
        assert cfg.base_url is not None  # validated when the config loaded
        keys = [ProviderKey(k.name, k.value.get_secret_value(), k.weight) for k in cfg.keys]
        super().__init__(name, cfg.base_url.rstrip("/"), keys, client, timeouts, cfg.headers)
        self.deployments = dict(cfg.deployments)
        self.api_version = cfg.api_version if cfg.api_version not in (None, "v1") else None
        self.bearer = cfg.auth == "bearer"

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return (wire, operation) in _PATHS

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        """The format this provider takes `model` in (for the engine's format bridge)."""
        return WireFormat.OPENAI_EMBEDDINGS if operation is Operation.EMBED else WireFormat.OPENAI_CHAT

    def serves(self, model: str) -> bool:
        # Deployments have names of the operator's choosing; allowlists decide.
        return True

    def url(self, call: ProviderCall, deployment: str) -> str:
        path = _PATHS[(call.wire, call.operation)]
        if self.api_version is None:
            return f"{self.base_url}/openai/v1{path}"
        version = quote(self.api_version, safe="")
        if call.wire is WireFormat.OPENAI_RESPONSES:
            return f"{self.base_url}/openai{path}?api-version={version}"
        return f"{self.base_url}/openai/deployments/{quote(deployment, safe='')}{path}?api-version={version}"

    async def send(self, call: ProviderCall) -> ProviderReply:
        deployment = self.deployments.get(call.model, call.model)
        body = call.body
        if call.doc.get("model") != deployment:
            # The v1 API and Responses route by the body's model, which must be the deployment.
            body = encode_body({**call.doc, "model": deployment})
            call.body = body
        headers = {"content-type": "application/json"}
        secret = secret_of(call.key)
        if self.bearer:
            headers["authorization"] = f"Bearer {secret}"
        else:
            headers["api-key"] = secret
        return await self._post(call, self.url(call, deployment), headers)
