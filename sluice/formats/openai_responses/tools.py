"""Responses API tools <-> canonical tools: function tools, `namespace` groups, hosted tools.

- A `namespace` tool is a named group of function tools (Codex sends its sub-agent tools as one,
  `multi_agent_v1`). Other formats have no groups, so its functions become plain tools named
  `<namespace>__<name>` (`multi_agent_v1__spawn_agent`), the namespace's description before their
  own. The canonical tool keeps (namespace, name): a call the model makes to the flat name goes
  back to the caller as `{"type": "function_call", "namespace": ..., "name": ...}`, which is how
  Codex dispatches it, and namespaced calls in the history get the flat name again. A flat name
  the target does not accept (too long, a `/` or `.` in the namespace) gets a valid one for that
  target from the bridge, as every tool name does (tool_names.py), and the answer's calls get the
  flat name back before they are regrouped here.
- A `custom` tool (freeform: the model writes one text, Codex's `apply_patch` or `exec`) becomes
  a function of one string argument, `input`, whose description carries the tool's grammar; a
  call to it goes back to the caller as a `custom_tool_call` with that text as its `input`, and
  `custom_tool_call` / `custom_tool_call_output` items in the history become calls and results.
- `additional_tools` input items (Codex sends its tools there for some models) add to `tools`.
- The hosted `web_search` tools are `optional`: a target that cannot run them gets the request
  without them (the bridge records the drop). Other hosted tools are native and refused elsewhere.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.core.canonical import Tool, ToolCall, Untranslatable
from sluice.core.types import WireFormat

WIRE = WireFormat.OPENAI_RESPONSES.value
SEPARATOR = "__"
_EMPTY = {"type": "object", "properties": {}}


def flat_name(namespace: str, name: str) -> str:
    """The name a function of a namespace has in formats without namespaces (before the target's
    name rule applies: tool_names.target_name)."""
    return f"{namespace}{SEPARATOR}{name}"


def decode_tools(raw: Any, out: list[Tool]) -> None:
    for t in raw or ():
        if t.get("type") == "namespace":
            namespace = str(t.get("name") or "")
            guidance = t.get("description") or ""
            for child in t.get("tools") or ():
                if child.get("type") not in ("function", "custom"):
                    kind = child.get("type")
                    raise Untranslatable(f"{WIRE}: a {kind!r} tool in namespace {namespace!r} cannot be translated")
                tool = _function(child) if child.get("type") == "function" else _custom(child)
                tool.namespaced = (namespace, tool.name)
                tool.name = flat_name(namespace, tool.name)
                if guidance:
                    tool.description = f"{guidance}\n\n{tool.description}" if tool.description else guidance
                out.append(tool)
        elif t.get("type") == "function":
            out.append(_function(t))
        elif t.get("type") == "custom":
            out.append(_custom(t))
        else:
            optional = str(t.get("type", "")).startswith("web_search")
            out.append(Tool(t.get("name") or t.get("type", ""), native=t, origin=WIRE, optional=optional))
    names = [t.name for t in out if t.native is None]
    if len(names) != len(set(names)):
        dup = next(n for n in names if names.count(n) > 1)
        raise Untranslatable(f"{WIRE}: two tools would have the name {dup!r} once namespaces are flattened")


def _function(t: dict[str, Any]) -> Tool:
    params = t.get("parameters") or dict(_EMPTY)
    return Tool(t.get("name", ""), t.get("description") or "", params)


def _custom(t: dict[str, Any]) -> Tool:
    fmt = t.get("format") or {}
    note = "The tool's whole input, as free-form text (not JSON)."
    if fmt.get("type") == "grammar" and fmt.get("definition"):
        note += f" It must follow this {fmt.get('syntax') or ''} grammar:\n{fmt['definition']}"
    params = {"type": "object", "properties": {"input": {"type": "string", "description": note}}, "required": ["input"]}
    return Tool(t.get("name", ""), t.get("description") or "", params, freeform=dict(fmt))


def freeform_input(arguments_json: str) -> str:
    """The text of a call to a custom tool, from the `{"input": ...}` arguments it was made with."""
    try:
        args = orjson.loads(arguments_json or "{}")
    except orjson.JSONDecodeError:
        return arguments_json
    if isinstance(args, dict) and isinstance(args.get("input"), str):
        return str(args["input"])
    return arguments_json


def freeform_names(tools: list[Tool]) -> frozenset[str]:
    return frozenset(t.name for t in tools if t.freeform is not None)


def custom_call(item: dict[str, Any]) -> ToolCall:
    """A `custom_tool_call` history item, as a call with the `{"input": text}` arguments."""
    args = orjson.dumps({"input": item.get("input") or ""}).decode()
    return ToolCall(item.get("call_id", ""), call_name(item), args)


def call_name(item: dict[str, Any]) -> str:
    """The canonical name of a `function_call` item (a namespaced call gets its flat name)."""
    name = str(item.get("name", ""))
    namespace = item.get("namespace")
    return flat_name(namespace, name) if namespace else name


def namespaces(tools: list[Tool]) -> dict[str, tuple[str, str]]:
    """flat name -> (namespace, name), for the calls of an answer or a history."""
    return {t.name: t.namespaced for t in tools if t.namespaced is not None}


def call_fields(name: str, groups: dict[str, tuple[str, str]]) -> dict[str, str]:
    """The `name` (and `namespace`) fields of a function_call item for a canonical call name."""
    group = groups.get(name)
    return {"name": name} if group is None else {"name": group[1], "namespace": group[0]}


def encode_tools(tools: list[Tool]) -> list[dict[str, Any]]:
    """The tools in their order, functions regrouped into their namespaces (where the first of a
    namespace was). Vendor tools of another format must have been refused already."""
    out: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for t in tools:
        if t.native is not None:
            out.append(t.native)
            continue
        if t.namespaced is None:
            out.append(_encode_function(t, t.name))
            continue
        namespace, name = t.namespaced
        if namespace not in groups:
            groups[namespace] = {"type": "namespace", "name": namespace, "description": "", "tools": []}
            out.append(groups[namespace])
        groups[namespace]["tools"].append(_encode_function(t, name))
    return out


def _encode_function(t: Tool, name: str) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "function" if t.freeform is None else "custom", "name": name}
    if t.description:
        tool["description"] = t.description
    if t.freeform is not None:
        return tool | ({"format": t.freeform} if t.freeform else {})
    return tool | {"parameters": t.parameters, "strict": False}
