"""The MCP request handlers: listings filtered by the caller's grants, and calls (tools, resource
reads, prompt gets) checked, rate limited, forwarded to the upstream server and recorded.

Anything the key may not use is answered exactly like something that does not exist, so the
catalogue cannot be probed.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import mcp_types as types
import orjson
from mcp import MCPError
from mcp.server.context import ServerRequestContext

from sluice.guardrails.service import Guardrails
from sluice.mcp.access import Grants, exposed_uri, split_name, split_uri
from sluice.mcp.catalog import Catalogue
from sluice.mcp.correlate import SessionCalls
from sluice.mcp.ratelimit import ToolRateLimits
from sluice.mcp.upstream import Upstream
from sluice.mcp.uris import normalise
from sluice.storage.records import VirtualKey

Ctx = ServerRequestContext[Any, Any]
RATE_LIMITED = -32029  # implementation-defined JSON-RPC server error; `data.retry_after_s` says when
TOOL_USE_META = "claudecode/toolUseId"  # Claude Code names the model's tool_use block in `_meta`


def _elapsed_us(started: float) -> int:
    return int((time.perf_counter() - started) * 1e6)


class CallHandlers:
    catalogue: Catalogue
    limits: ToolRateLimits
    session_calls: SessionCalls
    guardrails: Guardrails | None = None

    def caller(self, ctx: Ctx) -> tuple[VirtualKey, Grants, str | None]:
        raise NotImplementedError

    async def record(self, kind: str, key: VirtualKey, data: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- listings --------------------------------------------------------------------------------

    async def _list_tools(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        _, grants, _ = self.caller(ctx)
        await self.catalogue.prepare(grants)
        return types.ListToolsResult(tools=self.catalogue.tools(grants))

    async def _list_resources(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        _, grants, _ = self.caller(ctx)
        await self.catalogue.prepare(grants)
        return types.ListResourcesResult(resources=self.catalogue.resources(grants))

    async def _list_templates(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        _, grants, _ = self.caller(ctx)
        await self.catalogue.prepare(grants)
        return types.ListResourceTemplatesResult(resource_templates=self.catalogue.templates(grants))

    async def _list_prompts(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        _, grants, _ = self.caller(ctx)
        await self.catalogue.prepare(grants)
        return types.ListPromptsResult(prompts=self.catalogue.prompts(grants))

    # -- calls -----------------------------------------------------------------------------------

    def _base_record(self, ctx: Ctx, key: VirtualKey, server: str, method: str, arguments: Any) -> dict[str, Any]:
        encoded = orjson.dumps(arguments or {}, option=orjson.OPT_SORT_KEYS)
        scope = ctx.request.scope if ctx.request is not None else {}
        session = None
        if ctx.request is not None:  # Streamable HTTP names the session in a header, the SSE transport in the URL
            session = ctx.request.headers.get("mcp-session-id") or ctx.request.query_params.get("session_id")
        record: dict[str, Any] = {
            "virtual_key": key.id,
            "method": method,
            "session": session,
            "agent_session": scope.get("sluice.agent_session"),
            "server": server,
            "arguments_bytes": len(encoded),
            "arguments_sha256": hashlib.sha256(encoded).hexdigest(),
        }
        tool_use = dict(ctx.meta or {}).get(TOOL_USE_META)
        if isinstance(tool_use, str):
            record["tool_use_id"] = tool_use[:200]
        return record

    async def _deny(self, key: VirtualKey, record: dict[str, Any], what: str, name: str) -> MCPError:
        await self.record("mcp_denied", key, {**record, "outcome": "denied"})
        return MCPError(code=types.INVALID_PARAMS, message=f"Unknown {what}: {name}")

    async def _upstream(self, key: VirtualKey, record: dict[str, Any], server: str) -> Upstream:
        upstream = self.catalogue.get(server)
        assert upstream is not None
        try:
            await upstream.session()
        except MCPError as exc:
            await self.record("mcp_call", key, {**record, "outcome": "unavailable", "error": str(exc)[:300]})
            raise
        return upstream

    async def _forward(self, key: VirtualKey, record: dict[str, Any], upstream: Upstream, call: Any) -> Any:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(upstream.cfg.call_timeout_s + 1):
                result = await call
        except (MCPError, TimeoutError) as exc:
            if isinstance(exc, MCPError) and exc.error.code == types.CONNECTION_CLOSED:
                upstream.mark_dead()  # restarted in the background; this call is reported failed
            outcome = "timeout" if isinstance(exc, TimeoutError) else "upstream_error"
            await self.record(
                "mcp_call",
                key,
                {**record, "outcome": outcome, "error": str(exc)[:300], "duration_us": _elapsed_us(started)},
            )
            if isinstance(exc, TimeoutError):
                raise MCPError(code=types.REQUEST_TIMEOUT, message=f"{upstream.name} did not answer in time") from None
            raise
        outcome = "error_result" if getattr(result, "is_error", False) else "ok"
        await self.record("mcp_call", key, {**record, "outcome": outcome, "duration_us": _elapsed_us(started)})
        return result

    async def _call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        key, grants, agent_session = self.caller(ctx)
        server, tool = split_name(params.name)
        record = {**self._base_record(ctx, key, server, "tools/call", params.arguments), "tool": tool}
        if not server or self.catalogue.get(server) is None or not grants.tool(server, tool):
            raise await self._deny(key, record, "tool", params.name)
        upstream = await self._upstream(key, record, server)
        if not self.catalogue.has_tool(server, tool):
            raise await self._deny(key, record, "tool", params.name)
        limited = self.limits.admit(key.id, server, tool)
        if limited is not None:
            rule, retry_after = limited
            await self.record("mcp_denied", key, {**record, "outcome": "rate_limited", "rate_limit": rule})
            raise MCPError(
                code=RATE_LIMITED,
                message=f"Rate limit '{rule}' reached for {params.name}; retry in {retry_after:.0f} s",
                data={"retry_after_s": round(retry_after, 3), "rate_limit": rule},
            )
        client = upstream.client
        assert client is not None
        call = client.call_tool(tool, params.arguments or {}, read_timeout_seconds=upstream.cfg.call_timeout_s)
        result: types.CallToolResult = await self._forward(key, record, upstream, call)
        self.session_calls.add(key.id, agent_session, params.name)
        if self.guardrails is not None:  # tool outputs are where injections arrive
            blocked = await self.guardrails.mcp_output(key, result, record, self.record)
            if blocked is not None:
                raise MCPError(
                    code=types.INVALID_REQUEST, message=f"Blocked by guardrail rule '{blocked}' (tool output)"
                )
        return result

    async def _read_resource(self, ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        key, grants, _ = self.caller(ctx)
        server, asked = split_uri(params.uri)
        # The upstream gets the URI the grant was checked on: one spelling, no `..` left to resolve.
        uri = normalise(asked) or ""
        record = {**self._base_record(ctx, key, server, "resources/read", None), "uri": uri or asked}
        if not server or not uri or self.catalogue.get(server) is None or not grants.resource(server, uri):
            raise await self._deny(key, record, "resource", params.uri)
        upstream = await self._upstream(key, record, server)
        assert upstream.client is not None
        result: types.ReadResourceResult = await self._forward(
            key, record, upstream, upstream.client.read_resource(uri, cache_mode="bypass")
        )
        contents = [c.model_copy(update={"uri": exposed_uri(server, c.uri)}) for c in result.contents]
        return result.model_copy(update={"contents": contents})

    async def _get_prompt(self, ctx: Ctx, params: types.GetPromptRequestParams) -> types.GetPromptResult:
        key, grants, _ = self.caller(ctx)
        server, name = split_name(params.name)
        record = {**self._base_record(ctx, key, server, "prompts/get", params.arguments), "prompt": name}
        known = self.catalogue.get(server)
        if not server or known is None or not grants.prompt(server, name):
            raise await self._deny(key, record, "prompt", params.name)
        upstream = await self._upstream(key, record, server)
        if not any(p.name == name for p in upstream.catalog.prompts):
            raise await self._deny(key, record, "prompt", params.name)
        assert upstream.client is not None
        result: types.GetPromptResult = await self._forward(
            key, record, upstream, upstream.client.get_prompt(name, params.arguments)
        )
        return result
