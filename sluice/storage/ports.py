"""Storage ports: what the rest of Sluice needs from a store, per concern."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sluice.storage.grants import AgentMetric, GatewayGrant, GrantLookup, OAuthClient
from sluice.storage.records import (
    AlertClaim,
    AuditRecord,
    Bucket,
    BucketState,
    ConfigEvent,
    ConfigObject,
    LoggedRequest,
    RequestLogEntry,
    RequestQuery,
    SessionQuery,
    SpendRow,
    Stop,
    VirtualKey,
)


class KeyStore(Protocol):
    async def key_by_hash(self, key_hash: str) -> VirtualKey | None: ...
    async def key_by_id(self, key_id: str) -> VirtualKey | None: ...
    async def list_keys(self) -> list[VirtualKey]: ...
    async def create_key(self, key: VirtualKey, event: ConfigEvent | None = None) -> None:
        """Stores a new key; `event`, when given, is recorded in the same transaction."""
        ...

    async def seed_config_key(self, key: VirtualKey, *, replace_secret: bool) -> bool:
        """Insert or update a key declared in the config file, keeping its revocation.
        Returns True when the key was new."""
        ...

    async def update_key(self, key: VirtualKey, event: ConfigEvent | None = None) -> bool:
        """Replaces every field of an existing key but its creation time; False when unknown.
        `event`, when given, is recorded in the same transaction."""
        ...

    async def revoke_key(self, key_id: str, at: datetime) -> bool: ...
    async def keys_version(self) -> int:
        """A number that changes whenever any key changes, so caches know when to reload."""
        ...


class RequestLogStore(Protocol):
    async def insert_requests(self, entries: list[RequestLogEntry]) -> None: ...
    async def recent_requests(self, limit: int = 100) -> list[dict[str, Any]]: ...
    async def count_requests(self) -> int: ...
    async def query_requests(self, query: RequestQuery) -> list[dict[str, Any]]:
        """Entries matching every filter, newest first."""
        ...

    def logged_requests(
        self,
        since: datetime,
        until: datetime | None = None,
        batch: int = 10_000,
        *,
        keys: frozenset[str] | None = None,
        other_keys: bool = False,
    ) -> AsyncIterator[list[LoggedRequest]]:
        """The log's entries from `since` (to `until`), oldest first (then by request id), in
        batches, read in pages: never the whole log in memory. Read-only. `keys`: only the
        entries of those virtual keys (`other_keys`: only the entries of any other key or none,
        the complement), for a replay split over processes by keys."""
        ...

    async def spend_report(self, group_by: str, query: RequestQuery) -> list[dict[str, Any]]:
        """Cost (pico-dollars), tokens and requests of the matching entries grouped by `group_by`
        (key, user, team, model or day), largest cost first."""
        ...


class SessionLedger(Protocol):
    """Agent sessions, summed from the request log by its writer (`insert_requests` adds each new
    entry to its session in the same transaction; sluice.sessions.ledger)."""

    async def list_sessions(self, query: SessionQuery) -> list[dict[str, Any]]:
        """A page of the matching sessions, most recently active first, each with its `items`
        (models, MCP tools and error kinds, counted)."""
        ...

    async def get_session(self, ledger_id: str) -> dict[str, Any] | None: ...

    async def session_requests(
        self, virtual_key_id: str, session_id: str, limit: int = 1000, offset: int = 0
    ) -> list[dict[str, Any]]:
        """The session's request log entries, oldest first."""
        ...

    async def session_spend(self, group_by: tuple[str, ...], query: SessionQuery) -> list[dict[str, Any]]:
        """Cost, tokens, requests and sessions of the matching sessions grouped by `group_by`
        (any of repo, branch, client, team, key, user), largest cost first."""
        ...


class SpendLedger(Protocol):
    async def record_spend(self, rows: list[SpendRow]) -> None:
        """Durably records settlements; a row already there (same request id) is left as it is."""
        ...

    async def spend_totals(self, scope: str, scope_id: str, start: datetime, end: datetime) -> tuple[int, int, int]:
        """(cost in pico-dollars, tokens, requests) of `scope` (virtual_key, team or customer)
        admitted in [start, end)."""
        ...

    async def spend_since(self, since: datetime) -> list[SpendRow]: ...


class LimitCounters(Protocol):
    """Counters with reservations, shared by whatever enforces limits. Every method is atomic
    over all the buckets it is given."""

    async def reserve(
        self, request_id: str, items: Sequence[tuple[Bucket, int]], lease_s: float, now: float
    ) -> tuple[int | None, list[BucketState]]:
        """Adds `amount` to each bucket's reservation for `request_id` (on top of what it holds
        already) if no bucket would pass its limit; otherwise changes nothing. Returns the index
        of the first bucket that refused (or None) and every bucket's state, with `held` the
        request's own reservation in it, so a caller can tell settled spend from reservations of
        other requests in flight (a budget spent from one merely busy)."""
        ...

    async def settle(self, request_id: str, items: Sequence[tuple[Bucket, int]], now: float) -> None:
        """Replaces the request's reservation by the `amount` really used; idempotent."""
        ...

    async def peek(self, buckets: Sequence[Bucket]) -> list[BucketState]:
        """Current usage without reserving (routing rules read it); lapsed leases may still count."""
        ...

    async def seed(self, bucket: Bucket, used: int) -> bool:
        """Sets a bucket's usage from the ledger if no counter holds it yet; True when it did."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class LocalCounters(LimitCounters, Protocol):
    """Counters in this process: the same operations, callable without awaiting (each runs
    without a pause, so it is atomic on one event loop), for a path that must not yield."""

    def reserve_now(
        self, request_id: str, items: Sequence[tuple[Bucket, int]], lease_s: float, now: float
    ) -> tuple[int | None, list[BucketState]]: ...

    def settle_now(self, request_id: str, items: Sequence[tuple[Bucket, int]], now: float) -> None: ...


@runtime_checkable
class SharedSpendRates(Protocol):
    """A spend series per name (a session) over sliding windows, shared by every replica: what
    runaway detection's spend-rate rule reads (`RedisCounters`)."""

    async def add_spend(
        self, name: str, request_id: str, cost_pico: int, now: float, windows: Sequence[int]
    ) -> list[int]:
        """Adds a settled request's cost at `now` to the series (once per request id, atomically)
        and returns, per window (seconds), what the series spent in `[now - window, now]`."""
        ...


class MetaStore(Protocol):
    async def first_seen(self, name: str, now: int) -> int:
        """The value stored under `name`, storing `now` first if there is none (window anchors)."""
        ...

    async def swap_meta(self, name: str, expected: int, value: int) -> bool:
        """Replaces the value under `name` by `value` if it is `expected`, atomically: True when it did."""
        ...

    async def meta_value(self, name: str) -> int | None:
        """The value stored under `name`, if any (read only)."""
        ...


class AlertClaimStore(Protocol):
    """Alert claims (sluice.alerts.monitor), shared by every replica; each change is a
    compare-and-set on the claim's token."""

    async def claim_alert(self, claim: AlertClaim) -> AlertClaim:
        """Stores `claim` if its key has none yet; returns the claim stored under the key (this one
        when it was the first: same token)."""
        ...

    async def swap_alert_claim(
        self,
        key: str,
        token: int,
        new_token: int,
        claimed_ms: int,
        state: str,
        alert: dict[str, Any] | None = None,
    ) -> bool:
        """Renews, takes over or marks recorded (`state`) the pending claim under `key` if its token
        is still `token`, atomically; `alert`, when given, is kept with it. True when it did."""
        ...

    async def stale_alert_claims(
        self, before_ms: int, limit: int = 100, *, detections: bool = False
    ) -> list[AlertClaim]:
        """Pending claims that keep their alert, claimed or renewed before `before_ms`, oldest first:
        alerts' claims, or with `detections` the runaway detections' (alert id `detection:...`)."""
        ...

    async def prune_alert_claims(self, now_ms: int, before_ms: int) -> int:
        """Removes the claims done with (recorded, or pending without an alert) that were last
        changed before `before_ms` and need not be kept past `now_ms`, and the claims of the
        version before 0019 left in `sluice_meta` (`alert:...`) once their copy is that old;
        returns how many claims went."""
        ...


class ConfigStore(Protocol):
    """Live governance configuration. Every change is written together with its event."""

    async def list_objects(self) -> list[ConfigObject]: ...

    async def put_object(self, obj: ConfigObject, actor: str) -> ConfigEvent | None:
        """Creates or replaces; None when nothing changed."""
        ...

    async def delete_object(self, kind: str, object_id: str, actor: str) -> ConfigEvent | None: ...

    async def config_version(self) -> int: ...

    async def config_events(self, limit: int = 100) -> list[ConfigEvent]: ...

    async def record_event(self, event: ConfigEvent) -> None:
        """Records a change made elsewhere (a virtual key's) among the configuration events."""
        ...

    async def apply_objects(
        self, put: list[ConfigObject], delete: list[tuple[str, str]], actor: str
    ) -> list[ConfigEvent]:
        """Creates or replaces `put` and removes `delete` (kind, id) in one transaction, with an
        event for each real change; all or nothing."""
        ...


class AuditStore(Protocol):
    async def append_audit(self, records: list[AuditRecord]) -> None:
        """Appends records; a sequence number already taken is an error (another writer won)."""
        ...

    async def last_audit(self) -> AuditRecord | None: ...

    def audit_records(self, since_seq: int = 0) -> AsyncIterator[AuditRecord]:
        """Every record from `since_seq` on, by sequence number, read in pages."""
        ...

    async def prune_audit(
        self, before: datetime, anchor_for: Callable[[AuditRecord], tuple[dict[str, Any], str]]
    ) -> int:
        """Removes records older than `before` (never the newest), storing the sealed anchor that
        `anchor_for` makes of the last removed one, in one transaction. Returns how many went."""
        ...

    async def audit_anchor(self) -> tuple[dict[str, Any], str] | None: ...

    async def export_position(self, exporter: str) -> tuple[int, int]:
        """(last sequence number delivered, failures in a row) of an exporter."""
        ...

    async def set_export_position(self, exporter: str, last_seq: int, failures: int, holder: str | None = None) -> bool:
        """Stores an exporter's position; with `holder`, only while `holder` holds its lease
        (a process that lost it cannot move the position back). True when it was stored."""
        ...

    async def take_export_lease(self, exporter: str, holder: str, now_ms: int, ttl_ms: int) -> bool:
        """Takes or renews the one delivery lease of `exporter` for `holder` until `now_ms + ttl_ms`,
        atomically: True when `holder` has it (it was free, lapsed, or `holder`'s already)."""
        ...

    async def release_export_lease(self, exporter: str, holder: str) -> None:
        """Gives the lease up, if `holder` has it, so another process takes over at once."""
        ...

    async def dead_letter(self, exporter: str, first_seq: int, last_seq: int, error: str) -> None: ...


class StopStore(Protocol):
    """The kill switch's stops (sluice.sessions.stops), shared by every replica."""

    async def add_stop(self, scope: str, target: str, key_id: str | None, reason: str, actor: str) -> Stop:
        """Throws a stop; when the same one is in force already, returns that one."""
        ...

    async def add_stop_once(
        self, scope: str, target: str, key_id: str | None, reason: str, actor: str
    ) -> tuple[Stop, bool]:
        """Throws a stop unless one with exactly these fields was ever thrown (in force or lifted):
        (that stop, whether this call threw it). A runaway detection's pause, redone after a crash."""
        ...

    async def lift_stops(
        self, scope: str, target: str, key_id: str | None, actor: str, reason: str, *, any_key: bool = False
    ) -> list[Stop]: ...

    async def list_stops(self, *, active_only: bool = True, limit: int = 1000) -> list[Stop]: ...

    async def stops_version(self) -> int:
        """A number that changes whenever a stop is thrown or lifted (replicas poll it)."""
        ...


class GrantStore(Protocol):
    """Gateway sign-in grants (sluice.gateway_signin)."""

    async def create_grant(self, grant: GatewayGrant) -> None: ...
    async def grant_by(self, column: GrantLookup, value: str) -> GatewayGrant | None: ...
    async def swap_grant(self, old: GatewayGrant, new: GatewayGrant) -> bool:
        """Writes `new` only if the stored grant is still `old` (its version); False otherwise."""
        ...

    async def revoke_grants(self, user_id: str, at: float) -> int: ...

    # What a token cache follows (sluice.gateway_signin.token_cache): a number every replica can
    # poll that moves when a key changes or a sign-in is revoked or moves key, and the same count of
    # the changes this process made itself, read without I/O.
    credentials_generation: int

    async def credentials_version(self) -> int: ...
    async def grants_of(self, user_id: str) -> list[GatewayGrant]:
        """The person's sign-ins, newest first."""
        ...

    async def create_client(self, client: OAuthClient, *, most: int, most_from_address: int, since: float) -> bool:
        """Stores a registered client unless there are already `most` clients, or the address
        registered `most_from_address` since `since`; False when refused. When full, clients older
        than a day that no grant names are dropped first."""
        ...

    async def client_by_id(self, client_id: str) -> OAuthClient | None: ...

    async def insert_agent_metrics(self, rows: list[AgentMetric]) -> None: ...
    async def agent_metrics(self, user_id: str, since: datetime) -> list[AgentMetric]: ...
    async def agent_totals(self, key_ids: list[str], since: datetime) -> dict[str, tuple[int, int]]:
        """key id -> (pico-dollars, tokens) its agents reported (OTLP) since `since`."""
        ...


class Store(
    GrantStore,
    KeyStore,
    RequestLogStore,
    SessionLedger,
    SpendLedger,
    MetaStore,
    AlertClaimStore,
    ConfigStore,
    AuditStore,
    StopStore,
    Protocol,
):
    async def migrate(self) -> None: ...
    async def close(self) -> None: ...

    def write_counts(self) -> tuple[int, int]:
        """Transactions this process committed for the hot writes (request log, spend ledger,
        audit log) since it started, and the rows in them: their ratio is how well they batch."""
        ...
