"""People and groups (from SCIM, or from a first sign-in) and the virtual keys they hold.

Users and groups are ConfigObjects (kinds `user` and `group`) in the config store, so every
change is a recorded ConfigEvent like any other admin act. A user's body is their SCIM resource
(without id and meta) plus a few `sluice:` fields no client sees. Group membership decides a
person's access profile; the key allocated from it carries `user_id` and `profile_id`, and the
key cache derives its policy from the profile (sluice/governance/profiles.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sluice.audit.log import AuditLog
from sluice.governance.keys import generate_secret, hash_secret, hint_of
from sluice.governance.profiles import ProfileBook, profile_for_groups
from sluice.storage.ports import Store
from sluice.storage.records import ConfigEvent, ConfigObject, VirtualKey

log = logging.getLogger("sluice.directory")
USER, GROUP = "user", "group"
SUBJECT = "sluice:oidcSubject"  # the IdP's `sub`, linked at the first sign-in
SUBJECT_ISSUER = "sluice:oidcIssuer"  # the issuer of that `sub` (a subject is unique per issuer only)
CLAIMED = "sluice:keyClaimed"  # whether the person has seen their key's secret
IDP_GROUPS = "sluice:idpGroups"  # the groups claim of their last sign-in (sessions derive roles from it)
SESSIONS_NOT_BEFORE = "sluice:sessionsNotBefore"  # unix time: sessions issued before it are void


# Keys an operator issued (admin API, CLI, config file), even when attached to a person: not the
# person's self-service key, so the directory never re-profiles them and /auth/me/key never
# reissues them. Every other source is the directory's own allocation (the actor that caused it).
OPERATOR_SOURCES = frozenset({"api", "cli", "config"})


def is_self_service(key: VirtualKey) -> bool:
    """The key the directory allocated to its person from their access profile."""
    return key.profile_id is not None and key.source not in OPERATOR_SOURCES


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Directory:
    def __init__(
        self,
        store: Store,
        profiles: ProfileBook,
        audit: AuditLog,
        *,
        default_profile: str | None = None,
        keys_changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.profiles = profiles
        self._audit = audit
        self._default_profile = default_profile
        self._keys_changed = keys_changed
        # SCIM clients send requests in parallel (Okta pushes a group's members at once); one
        # allocation at a time keeps a person from getting two keys in this process.
        self._allocating = asyncio.Lock()

    async def objects(self, kind: str) -> list[ConfigObject]:
        return [o for o in await self.store.list_objects() if o.kind == kind]

    async def get(self, kind: str, object_id: str) -> dict[str, Any] | None:
        for obj in await self.objects(kind):
            if obj.id == object_id:
                return obj.body
        return None

    async def put(self, kind: str, object_id: str, body: dict[str, Any], actor: str) -> None:
        await self._record(await self.store.put_object(ConfigObject(kind, object_id, body, actor), actor))

    async def delete(self, kind: str, object_id: str, actor: str) -> None:
        await self._record(await self.store.delete_object(kind, object_id, actor))

    async def record(self, kind: str, actor: str, data: dict[str, Any]) -> None:
        """An identity event (sign-in, refused credential) in the audit log."""
        await self._audit.append(kind, actor, data)

    async def _record(self, event: ConfigEvent | None) -> None:
        if event is not None:
            data = {"object": event.kind, "id": event.object_id, "action": event.action}
            await self._audit.append(
                "config_change", event.actor, {**data, "before": event.before, "after": event.after}
            )

    async def groups_of(self, user_id: str) -> list[str]:
        """Names and external ids of the groups the user is a member of (profiles and role
        mappings may name either: Entra's groups claim carries object ids)."""
        found: list[str] = []
        for group in await self.objects(GROUP):
            if any(m.get("value") == user_id for m in group.body.get("members", [])):
                found += [v for v in (group.body.get("displayName"), group.body.get("externalId")) if v]
        return found

    async def profile_of(self, user_id: str) -> str | None:
        """The access profile the person's groups (directory and last sign-in) give them."""
        body = await self.get(USER, user_id)
        if body is None or not body.get("active", True):
            return None
        groups = [*await self.groups_of(user_id), *(str(g) for g in body.get(IDP_GROUPS, ()))]
        return profile_for_groups(self.profiles.profiles.values(), groups, self._default_profile)

    async def keys_of(self, user_id: str) -> list[VirtualKey]:
        return [k for k in await self.store.list_keys() if k.user_id == user_id and k.revoked_at is None]

    async def own_keys(self, user_id: str) -> list[VirtualKey]:
        """The person's self-service keys (allocated here), not the ones an operator attached."""
        return [k for k in await self.keys_of(user_id) if is_self_service(k)]

    async def revoke_keys(self, user_id: str, actor: str) -> int:
        """Revokes every key of the user at once and reloads the key cache, so their next model
        or MCP call is refused."""
        revoked = 0
        at = datetime.now(UTC)
        for key in await self.keys_of(user_id):
            if await self.store.revoke_key(key.id, at):
                revoked += 1
                await self._audit.append("key_revoked", actor, {"virtual_key": key.id, "user": user_id})
        if revoked and self._keys_changed is not None:
            await self._keys_changed()
        return revoked

    async def sync_key(
        self, user_id: str, actor: str, *, extra_groups: Iterable[str] = ()
    ) -> tuple[VirtualKey | None, str | None]:
        """Brings the user's key in line with their groups: allocates one from their profile if
        they have none (returning its secret), moves it to another profile if their groups now
        map elsewhere, revokes everything when they are inactive."""
        async with self._allocating:
            return await self._sync_key(user_id, actor, extra_groups)

    async def _sync_key(
        self, user_id: str, actor: str, extra_groups: Iterable[str]
    ) -> tuple[VirtualKey | None, str | None]:
        body = await self.get(USER, user_id)
        if body is None or not body.get("active", True):
            await self.revoke_keys(user_id, actor)
            return None, None
        groups = [*await self.groups_of(user_id), *extra_groups]
        profile_id = profile_for_groups(self.profiles.profiles.values(), groups, self._default_profile)
        current = await self.own_keys(user_id)
        if current:
            key = current[0]
            if key.profile_id != profile_id:
                key = dataclasses.replace(key, profile_id=profile_id)
                await self.store.update_key(key)
                await self._audit.append("key_profile", actor, {"virtual_key": key.id, "profile": profile_id})
                await self._changed()
            return key, None
        if profile_id is None:
            return None, None
        secret = generate_secret()
        key = VirtualKey(
            id=f"user-{secrets.token_hex(6)}",
            name=str(body.get("userName") or user_id),
            description=f"Issued to {body.get('userName') or user_id} from access profile {profile_id}",
            key_hash=hash_secret(secret),
            key_hint=hint_of(secret),
            source=actor.partition(":")[0] or "sso",
            user_id=user_id,
            profile_id=profile_id,
        )
        await self.store.create_key(key)
        await self._audit.append("key_issued", actor, {"virtual_key": key.id, "user": user_id, "profile": profile_id})
        if body.get(CLAIMED):  # a new key (after a reactivation): its secret is still to be shown
            await self.put(USER, user_id, {**body, CLAIMED: False}, actor)
        await self._changed()
        return key, secret

    async def set_active(self, user_id: str, active: bool, actor: str) -> dict[str, Any] | None:
        """Deactivates (or reactivates) a user as a SCIM `active` change does: the user object is
        updated and their keys follow through `sync_key` (deactivated: every key revoked at once;
        reactivated: a new key from their profile). None when there is no such user."""
        body = await self.get(USER, user_id)
        if body is None:
            return None
        if bool(body.get("active", True)) != active:
            body = {**body, "active": active, "meta": {**body.get("meta", {}), "lastModified": now_iso()}}
            await self.put(USER, user_id, body, actor)
        await self.sync_key(user_id, actor)
        return body

    async def new_secret(self, key: VirtualKey, actor: str) -> str:
        """A fresh secret for the user's own key, shown once; the old one stops working at once."""
        secret = generate_secret()
        fresh = dataclasses.replace(
            key,
            key_hash=hash_secret(secret),
            key_hint=hint_of(secret),
            previous_key_hash=None,
            previous_valid_until=None,
        )
        await self.store.update_key(fresh)
        await self._audit.append("key_secret_reissued", actor, {"virtual_key": key.id, "user": key.user_id})
        await self._changed()
        return secret

    async def _changed(self) -> None:
        if self._keys_changed is not None:
            await self._keys_changed()
