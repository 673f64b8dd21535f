"""A scripted agent loop for the fake providers: the model asks for one tool, then answers.

`scripted(upstream, Step(...))` makes every wire of a FakeUpstream answer a request whose tools include
`Step.tool` and whose conversation has no tool result yet with a call to that tool with `Step.args` (the
CLI's own write or shell tool, writing a file), and a request that carries the tool's result with the
fake's usual final text. The strict rules still judge every request first: this only chooses the answer.

It works by forcing the tool choice in the document the reply builder reads (each wire then calls the
named tool, with its usual ids, thinking blocks and thought signatures) and putting the scripted arguments
in the call. Kept apart from the wires (a module of its own) so the strict fakes can change freely.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes import aws_wire, cloud, gemini_wire, responses_wire, rules_converse
from tests.fakes.upstream import FakeUpstream

# What each wire's tool results look like in a request body (Anthropic, Chat, Responses, Gemini).
_RESULT_MARKS = ('"tool_result"', '"role":"tool"', '"role": "tool"', "function_call_output", '"functionResponse"')


@dataclass
class Step:
    tool: str  # the CLI's tool name, as it declares it
    args: dict[str, Any]  # the arguments the model calls it with
    always: bool = False  # call it on every turn, results or not (a runaway agent)


def _tool_names(doc: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for tool in doc.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        names.add(str(tool.get("name") or (tool.get("function") or {}).get("name") or ""))
        for declaration in tool.get("functionDeclarations") or ():
            names.add(str(declaration.get("name", "")))
        for child in tool.get("tools") or ():  # a Responses namespace
            names.add(str(child.get("name", "")))
    return names


def _wants_call(step: Step, doc: dict[str, Any], body: bytes) -> bool:
    text = body.decode("utf-8", "replace")
    return step.tool in _tool_names(doc) and (step.always or not any(mark in text for mark in _RESULT_MARKS))


def _with_args(reply: Any, step: Step) -> Any:
    if getattr(reply, "tool", None) is None:
        return reply
    return dataclasses.replace(reply, tool=dataclasses.replace(reply.tool, input=dict(step.args)))


@contextlib.contextmanager
def scripted(upstream: FakeUpstream, step: Step) -> Iterator[None]:
    """The upstream answers as the agent loop's model while the context is open."""
    anthropic, openai = upstream.anthropic_reply, upstream.openai_reply
    responses, gemini = responses_wire.responses_reply, gemini_wire.gemini_reply

    def wrap(build: Callable[..., Any], force: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
        def reply(doc: dict[str, Any], body: bytes, model: str) -> Any:
            if not _wants_call(step, dict(doc), body):
                return build(doc, body, model)
            return _with_args(build(force(dict(doc)), body, model), step)

        return reply

    name = step.tool
    upstream.anthropic_reply = wrap(anthropic, lambda d: d | {"tool_choice": {"type": "tool", "name": name}})  # type: ignore[method-assign]
    upstream.openai_reply = wrap(  # type: ignore[method-assign]
        openai, lambda d: d | {"tool_choice": {"type": "function", "function": {"name": name}}}
    )
    responses_wire.responses_reply = wrap(  # type: ignore[assignment]
        responses, lambda d: d | {"tool_choice": {"type": "function", "name": name}, "tools": _flat(d)}
    )
    gemini_wire.gemini_reply = wrap(  # type: ignore[assignment]
        gemini, lambda d: d | {"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}}
    )
    converse = upstream._converse if isinstance(upstream, cloud.CloudFake) else None
    if isinstance(upstream, cloud.CloudFake):
        upstream._converse = _converse_call(upstream, step, converse)  # type: ignore[method-assign]
    try:
        yield
    finally:
        upstream.anthropic_reply, upstream.openai_reply = anthropic, openai  # type: ignore[method-assign]
        responses_wire.responses_reply, gemini_wire.gemini_reply = responses, gemini
        if converse is not None:
            upstream._converse = converse  # type: ignore[attr-defined]


def _converse_call(up: cloud.CloudFake, step: Step, plain: Any) -> Callable[..., Any]:
    """Bedrock Converse (the cloud fake answers text only): the scripted call as a `toolUse` block."""

    async def converse(request: web.Request, doc: dict[str, Any], stream: bool) -> web.StreamResponse:
        tools = {str((t.get("toolSpec") or {}).get("name")) for t in (doc.get("toolConfig") or {}).get("tools") or ()}
        answered = any("toolResult" in b for m in doc.get("messages") or () for b in m.get("content") or ())
        if step.tool not in tools or answered or rules_converse.check(doc) is not None:
            return await plain(request, doc, stream)  # the plain answer, or the rules' refusal
        use = {"toolUseId": "tooluse_" + uuid.uuid4().hex[:22], "name": step.tool}
        usage = {"inputTokens": 12, "outputTokens": 20, "totalTokens": 32}
        if not stream:
            message = {"role": "assistant", "content": [{"toolUse": {**use, "input": step.args}}]}
            answer = {
                "output": {"message": message},
                "stopReason": "tool_use",
                "usage": usage,
                "metrics": {"latencyMs": 42},
            }
            return web.Response(body=orjson.dumps(answer), headers=cloud._amzn_ok("application/json"))
        frames = [
            aws_wire.event("messageStart", {"role": "assistant"}),
            aws_wire.event("contentBlockStart", {"start": {"toolUse": use}, "contentBlockIndex": 0}),
            aws_wire.event(
                "contentBlockDelta", {"delta": {"toolUse": {"input": json.dumps(step.args)}}, "contentBlockIndex": 0}
            ),
            aws_wire.event("contentBlockStop", {"contentBlockIndex": 0}),
            aws_wire.event("messageStop", {"stopReason": "tool_use"}),
            aws_wire.event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}}),
        ]
        return await cloud._send_frames(request, frames)

    return converse


def _flat(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Responses tools with namespaces opened (the reply builder looks at top-level functions only)."""
    out = []
    for tool in doc.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "namespace":
            out.extend(t for t in tool.get("tools") or () if isinstance(t, dict))
        elif isinstance(tool, dict):
            out.append(tool)
    return out


def called(requests: list[Any], path_part: str) -> list[dict[str, Any]]:
    """The JSON bodies of the POSTs to a path containing `path_part`, in order."""
    return [json.loads(r.body) for r in requests if r.method == "POST" and path_part in r.path]
