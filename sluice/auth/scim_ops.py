"""SCIM filters and PATCH operations over resource documents (pure).

Filters (RFC 7644 3.4.2.2): `attr op "value"` joined by `and`, with eq, ne, co, sw, ew and pr,
which covers what Okta and Entra send (`userName eq "..."`, `externalId eq "..."`,
`displayName eq "..."`). PATCH (RFC 7644 3.5.2) in the shapes the two directories use:
Okta's `{"op": "replace", "value": {"active": false}}` without a path and
`{"op": "remove", "path": "members[value eq \\"id\\"]"}`; Entra's capitalised ops ("Replace",
"Add", "Remove"), string booleans ("False"), `emails[type eq "work"].value`, enterprise-extension
paths, and removing members by a value list.
"""

from __future__ import annotations

import copy
import re
from typing import Any

_COMPARISON = re.compile(
    r'^\s*([A-Za-z][\w.:$-]*)\s+(eq|ne|co|sw|ew|pr)(?:\s+("(?:[^"\\]|\\.)*"|true|false|null|-?\d+))?\s*$', re.I
)
_PATH = re.compile(r"^(?P<attr>[A-Za-z][\w$-]*)(?:\[(?P<filter>[^\]]+)\])?(?:\.(?P<sub>[A-Za-z][\w$-]*))?$")
EXTENSION_PREFIX = "urn:ietf:params:scim:schemas:extension:"
CASE_EXACT = {"id", "externalId"}  # RFC 7643: the rest of what we filter on compares case-insensitively


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type


def _literal(text: str | None) -> Any:
    if text is None:
        return None
    if text.startswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    low = text.lower()
    return {"true": True, "false": False, "null": None}.get(low, int(text) if low.lstrip("-").isdigit() else text)


def _get(doc: dict[str, Any], attr: str) -> Any:
    """An attribute by (case-insensitive) name, dotted sub-attribute, or over a multi-valued one."""
    node: Any = doc
    for part in attr.split("."):
        if isinstance(node, list):
            node = [_get(item, part) for item in node if isinstance(item, dict)]
            continue
        if not isinstance(node, dict):
            return None
        node = next((v for k, v in node.items() if k.lower() == part.lower()), None)
    return node


def _compare(value: Any, op: str, expected: Any, exact: bool) -> bool:
    if isinstance(value, list):
        return any(_compare(v, op, expected, exact) for v in value)
    if op == "pr":
        return value not in (None, "", [], {})
    if isinstance(value, str) and isinstance(expected, str):
        a, b = (value, expected) if exact else (value.casefold(), expected.casefold())
        return {"eq": a == b, "ne": a != b, "co": b in a, "sw": a.startswith(b), "ew": a.endswith(b)}[op]
    if op == "eq":
        return bool(value == expected)
    if op == "ne":
        return bool(value != expected)
    return False


def parse_filter(text: str) -> list[tuple[str, str, Any]]:
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.I):
        m = _COMPARISON.match(part)
        if m is None or (m.group(2).lower() != "pr" and m.group(3) is None):
            raise ScimError(400, f'Unsupported filter {text!r}: use attr eq "value" (and ...).', "invalidFilter")
        clauses.append((m.group(1), m.group(2).lower(), _literal(m.group(3))))
    return clauses


def matches(doc: dict[str, Any], clauses: list[tuple[str, str, Any]]) -> bool:
    return all(_compare(_get(doc, attr), op, value, attr in CASE_EXACT) for attr, op, value in clauses)


def _bool_strings(value: Any) -> Any:
    # Entra sends booleans as the strings "True"/"False" in PATCH values.
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _split_extension(path: str) -> tuple[str | None, str]:
    if path.lower().startswith(EXTENSION_PREFIX):
        urn, _, attr = path.rpartition(":")
        return urn, attr
    return None, path


def apply_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """The document after the operations, all or nothing (RFC 7644 3.5.2: atomic)."""
    out = copy.deepcopy(doc)
    for op in operations:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise ScimError(400, "Each operation needs an 'op'.", "invalidSyntax")
        kind = op["op"].lower()
        if kind not in ("add", "replace", "remove"):
            raise ScimError(400, f"Unknown PATCH op {op['op']!r}.", "invalidSyntax")
        path, value = op.get("path"), op.get("value")
        if not path:
            if kind == "remove" or not isinstance(value, dict):
                raise ScimError(400, "An operation without a path needs an object value.", "noTarget")
            for attr, item in value.items():
                if attr.lower().startswith(EXTENSION_PREFIX) and isinstance(item, dict):
                    out.setdefault(attr, {}).update(item)
                else:
                    _apply(out, kind, attr, item)
            continue
        _apply(out, kind, str(path), value)
    return out


def _apply(doc: dict[str, Any], kind: str, path: str, value: Any) -> None:
    urn, rest = _split_extension(path)
    target = doc.setdefault(urn, {}) if urn else doc
    m = _PATH.match(rest)
    if m is None:
        raise ScimError(400, f"Unsupported path {path!r}.", "invalidPath")
    attr, where, sub = m.group("attr"), m.group("filter"), m.group("sub")
    attr = next((k for k in target if k.lower() == attr.lower()), attr)
    value = _bool_strings(value)
    if where is not None:
        _apply_filtered(target, kind, attr, parse_filter(where), sub, value)
    elif sub is not None:
        parent = target.setdefault(attr, {})
        if not isinstance(parent, dict):
            raise ScimError(400, f"{attr} has no sub-attribute {sub}.", "invalidPath")
        if kind == "remove":
            parent.pop(sub, None)
        else:
            parent[sub] = value
    elif kind == "remove":
        if isinstance(value, list) and isinstance(target.get(attr), list):
            gone = {v.get("value") for v in value if isinstance(v, dict)}
            target[attr] = [item for item in target[attr] if item.get("value") not in gone]
        else:
            target.pop(attr, None)
    elif kind == "add" and isinstance(value, list):
        current = target.get(attr)
        existing: list[Any] = current if isinstance(current, list) else []
        have = {item.get("value") for item in existing if isinstance(item, dict)}
        target[attr] = [*existing, *(v for v in value if not (isinstance(v, dict) and v.get("value") in have))]
    elif kind == "add" and isinstance(value, dict) and isinstance(target.get(attr), dict):
        target[attr].update(value)
    else:
        target[attr] = value


def _apply_filtered(
    target: dict[str, Any], kind: str, attr: str, clauses: list[tuple[str, str, Any]], sub: str | None, value: Any
) -> None:
    items = target.get(attr)
    items = items if isinstance(items, list) else []
    hits = [item for item in items if isinstance(item, dict) and matches(item, clauses)]
    if kind == "remove":
        target[attr] = [item for item in items if item not in hits] if sub is None else items
        for item in hits if sub else ():
            item.pop(sub, None)
        return
    if not hits:
        # `emails[type eq "work"].value` on a user without a work email adds one.
        seed = {a: v for a, op, v in clauses if op == "eq"}
        items.append(seed)
        hits = [seed]
    for item in hits:
        if sub is not None:
            item[sub] = value
        elif isinstance(value, dict):
            item.update(value)
    target[attr] = items
