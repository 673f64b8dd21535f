"""Responses API tools <-> canonical tools: function tools, `namespace` groups, hosted tools.

- A `namespace` tool is a named group of function tools (Codex sends its sub-agent tools as one,
  `multi_agent_v1`). Other formats have no groups, so its functions become plain tools named
  `<namespace>__<name>` (`multi_agent_v1__spawn_agent`), the namespace's description before their
  own. The canonical tool keeps (namespace, name): a call the model makes to the flat name goes
  back to the caller as `{"type": "function_call", "namespace": ..., "name": ...}`, which is how
  Codex dispatches it, and namespaced calls in the history get the flat name again. A flat name
  that would not be valid everywhere (64 characters of `[A-Za-z0-9_-]`, not starting with a digit
  or dash) is shortened and made unique with a hash of the pair.
- `additional_tools` input items (Codex sends its tools there for some models) add to `tools`.
- The hosted `web_search` tools are `optional`: a target that cannot run them gets the request
  without them (the bridge records the drop). Other hosted tools are native and refused elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sluice.core.canonical import Tool, Untranslatable
from sluice.core.types import WireFormat

WIRE = WireFormat.OPENAI_RESPONSES.value
SEPARATOR = "__"
_VALID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_EMPTY = {"type": "object", "properties": {}}


def flat_name(namespace: str, name: str) -> str:
    """The name a function of a namespace has in formats without namespaces."""
    flat = f"{namespace}{SEPARATOR}{name}"
    if _VALID.fullmatch(flat):
        return flat
    digest = hashlib.sha256(f"{len(namespace)}:{namespace}{name}".encode()).hexdigest()[:10]
    hint = re.sub(r"[^A-Za-z0-9_-]", "_", flat)[:50]
    return f"ns_{hint}_{digest}"


def decode_tools(raw: Any, out: list[Tool]) -> None:
    for t in raw or ():
        if t.get("type") == "namespace":
            namespace = str(t.get("name") or "")
            guidance = t.get("description") or ""
            for child in t.get("tools") or ():
                if child.get("type") != "function":
                    kind = child.get("type")
                    raise Untranslatable(f"{WIRE}: a {kind!r} tool in namespace {namespace!r} cannot be translated")
                tool = _function(child)
                tool.namespaced = (namespace, tool.name)
                tool.name = flat_name(namespace, tool.name)
                if guidance:
                    tool.description = f"{guidance}\n\n{tool.description}" if tool.description else guidance
                out.append(tool)
        elif t.get("type") == "function":
            out.append(_function(t))
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
    """Function tools, regrouped into their namespaces (in order of first appearance)."""
    out: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for t in tools:
        if t.native is not None:
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
    tool: dict[str, Any] = {"type": "function", "name": name}
    if t.description:
        tool["description"] = t.description
    return tool | {"parameters": t.parameters, "strict": False}
