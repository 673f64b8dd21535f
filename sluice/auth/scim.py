"""SCIM 2.0 Users and Groups (RFC 7643/7644) over the directory.

What provisioning means here: creating a user (or adding them to a group) allocates their
virtual key from the access profile their groups map to; `active: false` (Okta and Entra's
"deprovision") or DELETE revokes all their keys at once and reloads the key cache, so their next
model or MCP call is refused. Reactivating a user allocates a new key (revoked ones stay revoked).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sluice.auth.directory import GROUP, USER, Directory, now_iso
from sluice.auth.scim_ops import ScimError, apply_patch, matches, parse_filter

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_PAGE = 200
ORDER = "sluice:order"
_SERVER_OWNED = {"id", "meta", "schemas", "password"}  # never stored from a client's document


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in _SERVER_OWNED and not k.startswith("sluice:")}


class ScimService:
    def __init__(self, directory: Directory, base_url: str = "/scim/v2") -> None:
        self.directory = directory
        self.base_url = base_url

    def render(
        self, kind: str, object_id: str, body: dict[str, Any], excluded: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        resource_type = "User" if kind == USER else "Group"
        schemas = [USER_SCHEMA] if kind == USER else [GROUP_SCHEMA]
        if kind == USER and ENTERPRISE in body:
            schemas.append(ENTERPRISE)
        meta = body.get("meta", {})
        doc: dict[str, Any] = {"schemas": schemas, "id": object_id, **_clean(body)}
        if kind == USER:
            doc.setdefault("active", True)
        if kind == GROUP:
            doc.setdefault("members", [])
        doc["meta"] = {
            "resourceType": resource_type,
            "created": meta.get("created"),
            "lastModified": meta.get("lastModified"),
            "location": f"{self.base_url}/{resource_type}s/{object_id}",
        }
        return {k: v for k, v in doc.items() if k not in excluded}

    async def list(
        self, kind: str, filter_text: str | None, start_index: int, count: int | None, excluded: frozenset[str]
    ) -> dict[str, Any]:
        clauses = parse_filter(filter_text) if filter_text else []
        found = []
        # Pages must be stable between requests: creation order (ids are random).
        for obj in sorted(await self.directory.objects(kind), key=lambda o: (o.body.get(ORDER, 0), o.id)):
            doc = {"id": obj.id, **obj.body}
            if matches(doc, clauses):
                found.append(obj)
        start = max(1, start_index)  # RFC 7644 3.4.2.4: 1-based, less than 1 is 1
        size = MAX_PAGE if count is None else max(0, min(count, MAX_PAGE))
        page = found[start - 1 : start - 1 + size]
        return {
            "schemas": [LIST_SCHEMA],
            "totalResults": len(found),
            "startIndex": start,
            "itemsPerPage": len(page),
            "Resources": [self.render(kind, o.id, o.body, excluded) for o in page],
        }

    async def get(self, kind: str, object_id: str) -> dict[str, Any]:
        body = await self.directory.get(kind, object_id)
        if body is None:
            raise ScimError(404, f"{'User' if kind == USER else 'Group'} {object_id} not found.")
        return body

    async def _check_unique(self, kind: str, body: dict[str, Any], object_id: str | None) -> None:
        attr = "userName" if kind == USER else "displayName"
        value = body.get(attr)
        if not isinstance(value, str) or not value.strip():
            raise ScimError(400, f"{attr} is required.", "invalidValue")
        for obj in await self.directory.objects(kind):
            other = obj.body.get(attr)
            if obj.id != object_id and isinstance(other, str) and other.casefold() == value.casefold():
                raise ScimError(409, f"A {kind} with {attr} {value!r} exists already.", "uniqueness")

    async def create(self, kind: str, doc: dict[str, Any], actor: str) -> tuple[str, dict[str, Any]]:
        body = _clean(doc)
        await self._check_unique(kind, body, None)
        if kind == USER:
            body["active"] = _truthy(body.get("active", True))
        stamp = now_iso()
        body["meta"] = {"created": stamp, "lastModified": stamp}
        body[ORDER] = time.time_ns()
        object_id = secrets.token_hex(16)
        await self.directory.put(kind, object_id, body, actor)
        await self._after_change(kind, object_id, None, body, actor)
        return object_id, body

    async def replace(self, kind: str, object_id: str, doc: dict[str, Any], actor: str) -> dict[str, Any]:
        before = await self.get(kind, object_id)
        body = {**_clean(doc), **{k: v for k, v in before.items() if k.startswith("sluice:")}}
        await self._check_unique(kind, body, object_id)
        if kind == USER:
            body["active"] = _truthy(body.get("active", True))
        return await self._store(kind, object_id, before, body, actor)

    async def patch(self, kind: str, object_id: str, doc: dict[str, Any], actor: str) -> dict[str, Any]:
        operations = doc.get("Operations")
        if not isinstance(operations, list):
            raise ScimError(400, "A PatchOp needs an 'Operations' list.", "invalidSyntax")
        before = await self.get(kind, object_id)
        body = apply_patch(before, operations)
        body = {k: v for k, v in body.items() if k not in ("id", "schemas")}
        if kind == USER:
            body["active"] = _truthy(body.get("active", True))
        await self._check_unique(kind, body, object_id)
        return await self._store(kind, object_id, before, body, actor)

    async def _store(
        self, kind: str, object_id: str, before: dict[str, Any], body: dict[str, Any], actor: str
    ) -> dict[str, Any]:
        body["meta"] = {**before.get("meta", {}), "lastModified": now_iso()}
        await self.directory.put(kind, object_id, body, actor)
        await self._after_change(kind, object_id, before, body, actor)
        return body

    async def delete(self, kind: str, object_id: str, actor: str) -> None:
        before = await self.get(kind, object_id)
        if kind == USER:
            await self.directory.revoke_keys(object_id, actor)
            for group in await self.directory.objects(GROUP):  # no dangling memberships
                members = group.body.get("members", [])
                if any(m.get("value") == object_id for m in members):
                    kept = [m for m in members if m.get("value") != object_id]
                    await self.directory.put(GROUP, group.id, {**group.body, "members": kept}, actor)
        await self.directory.delete(kind, object_id, actor)
        if kind == GROUP:
            await self._after_change(kind, object_id, before, {}, actor)

    async def _after_change(
        self, kind: str, object_id: str, before: dict[str, Any] | None, after: dict[str, Any], actor: str
    ) -> None:
        """Keys follow people: a user's change re-syncs their key; a group's change re-syncs
        the members who joined or left (and all of them when the group is renamed, since
        profiles name groups)."""
        if kind == USER:
            await self.directory.sync_key(object_id, actor)
            return
        old = {m.get("value") for m in (before or {}).get("members", [])}
        new = {m.get("value") for m in after.get("members", [])}
        renamed = (before or {}).get("displayName") != after.get("displayName")
        touched = (old | new) if renamed else (old ^ new)
        for user_id in sorted(u for u in touched if isinstance(u, str)):
            if await self.directory.get(USER, user_id) is not None:
                await self.directory.sync_key(user_id, actor)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "")
    return bool(value)
