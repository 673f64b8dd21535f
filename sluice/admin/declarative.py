"""Configuration as code: a declarative file against the live store.

The file has the config file's shape for the sections it covers (teams, customers, budgets,
rate_limits, access_profiles, providers with their keys, routing aliases and rules, mcp servers
and tool groups);
other sections (server, store, audit, virtual_keys ...) are ignored, so a gateway's own config
file can be planned as it is. The file is authoritative for what it covers: `plan` lists every
object it would create, change or delete, `apply` does that in one transaction, and `export`
writes the store as such a file (secrets as their `env.NAME` reference or the placeholder
`(encrypted)`, never in plain nor sealed), which `plan` then shows as no change: the placeholder
means "what the store holds".

`env.NAME` references are kept as references (not resolved), so a plan needs no secrets.
Virtual keys are not covered: they are issued per person with a secret shown once. Nor are
users and groups (kinds `user` and `group`): they are directory data the identity provider owns
through SCIM, so `plan` never deletes them, `apply` never writes them and `export` leaves them out.
Admin API tokens are not covered either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sluice.admin.kinds import KINDS, keep_stored_secrets
from sluice.admin.secrets import is_sealed
from sluice.storage.records import ConfigObject

DECLARATIVE_KINDS = tuple(KINDS)
_LISTS = {
    "team": "teams",
    "customer": "customers",
    "budget": "budgets",
    "rate_limit": "rate_limits",
    "access_profile": "access_profiles",
}
_NESTED = {
    "routing_rule": ("routing", "rules"),
    "alias": ("routing", "aliases"),
    "mcp_server": ("mcp", "servers"),
    "tool_group": ("mcp", "tool_groups"),
}


class DeclarationError(ValueError):
    pass


@dataclass(frozen=True)
class Change:
    action: str  # create | update | delete
    kind: str
    id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _entries(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(kind, entry, where) for every entry the file declares."""
    found: list[tuple[str, dict[str, Any], str]] = []
    for kind, section in _LISTS.items():
        found += [(kind, e, f"{section}[{i}]") for i, e in enumerate(doc.get(section) or [])]
    for kind, (outer, inner) in _NESTED.items():
        items = (doc.get(outer) or {}).get(inner) or []
        found += [(kind, e, f"{outer}.{inner}[{i}]") for i, e in enumerate(items)]
    for name, cfg in (doc.get("providers") or {}).items():
        cfg = dict(cfg or {})
        keys = cfg.pop("keys", None) or []
        found.append(("provider", {"name": name, **cfg}, f"providers.{name}"))
        found += [("provider_key", {"provider": name, **k}, f"providers.{name}.keys[{i}]") for i, k in enumerate(keys)]
    return found


def declared(doc: Any, existing: list[ConfigObject], source: str = "<file>") -> list[ConfigObject]:
    """The objects a parsed file declares, validated, with secrets in their stored form. A plain
    secret equal to what the store holds keeps the stored ciphertext (so it plans as no change)."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise DeclarationError(f"{source}: the file must be a mapping at the top level")
    stored = {(o.kind, o.id): o for o in existing}
    objects: dict[tuple[str, str], ConfigObject] = {}
    problems: list[str] = []
    for kind_name, entry, where in _entries(doc):
        kind = KINDS[kind_name]
        try:
            model: BaseModel = kind.parse(entry)
            ident = kind.ident(model)
            body = kind.stored_body(keep_stored_secrets(kind_name, model, _body(stored.get((kind_name, ident)))))
        except ValidationError as exc:
            problems += [
                f"  {where}.{'.'.join(map(str, e['loc']))}: {e['msg']}".replace(". :", ":") for e in exc.errors()
            ]
            continue
        except ValueError as exc:
            problems.append(f"  {where}: {exc}")
            continue
        if (kind_name, ident) in objects:
            problems.append(f"  {where}: {kind_name.replace('_', ' ')} {ident!r} appears twice")
        objects[kind_name, ident] = ConfigObject(kind_name, ident, body, "apply")
    if problems:
        raise DeclarationError(f"{source}: invalid declaration\n" + "\n".join(problems))
    return list(objects.values())


def _body(obj: ConfigObject | None) -> dict[str, Any] | None:
    return obj.body if obj is not None else None


def plan(existing: list[ConfigObject], wanted: list[ConfigObject]) -> list[Change]:
    live = {(o.kind, o.id): o for o in existing if o.kind in DECLARATIVE_KINDS}
    changes = []
    for obj in wanted:
        current = live.pop((obj.kind, obj.id), None)
        if current is None:
            changes.append(Change("create", obj.kind, obj.id, None, obj.body))
        elif current.body != obj.body:
            changes.append(Change("update", obj.kind, obj.id, current.body, obj.body))
    changes += [Change("delete", o.kind, o.id, o.body, None) for o in live.values()]
    order = {k: i for i, k in enumerate(DECLARATIVE_KINDS)}
    return sorted(changes, key=lambda c: (order[c.kind], c.id))


def render(changes: list[Change]) -> list[str]:
    """A plan for people: one line per object, `~` lines for the fields that change."""
    if not changes:
        return ["No changes: the store matches the file."]
    marks = {"create": "+", "update": "~", "delete": "-"}
    lines = []
    for c in changes:
        lines.append(f"{marks[c.action]} {c.kind} {c.id}")
        before, after = c.before or {}, c.after or {}
        for field in sorted(set(before) | set(after)):
            if before.get(field) != after.get(field):
                old = "" if field not in before else f"{_show(field, before[field])} -> "
                new = "(removed)" if field not in after else _show(field, after[field])
                lines.append(f"    {field}: {old}{new}")
    counts = {a: sum(c.action == a for c in changes) for a in marks}
    lines.append(f"Plan: {counts['create']} to create, {counts['update']} to change, {counts['delete']} to delete.")
    return lines


def _show(field: str, value: Any) -> str:
    if field in ("value", "env", "headers") or (field == "url" and isinstance(value, str) and is_sealed(value)):
        return "(secret)" if isinstance(value, str) else "{" + ", ".join(sorted(value)) + "}"
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def export(objects: list[ConfigObject]) -> dict[str, Any]:
    """The store's declarative objects as a file's document (users, groups and admin tokens are
    not declarative: they are left out)."""
    doc: dict[str, Any] = {}
    for obj in sorted(objects, key=lambda o: (o.kind, o.id)):
        if obj.kind not in DECLARATIVE_KINDS:
            continue
        body = dict(KINDS[obj.kind].public(obj.body))  # secrets as env.NAME or (encrypted), never sealed values
        if obj.kind in _LISTS:
            doc.setdefault(_LISTS[obj.kind], []).append(body)
        elif obj.kind in _NESTED:
            outer, inner = _NESTED[obj.kind]
            doc.setdefault(outer, {}).setdefault(inner, []).append(body)
        elif obj.kind == "provider":
            provider = doc.setdefault("providers", {}).setdefault(body.pop("name"), {})
            provider.update(body)
        elif obj.kind == "provider_key":
            provider = doc.setdefault("providers", {}).setdefault(body.pop("provider"), {})
            provider.setdefault("keys", []).append(body)
    return doc
