"""`GET /healthz` (the process answers) and `GET /readyz` (it can serve: store, Redis, audit,
config), cheap enough for an orchestrator to probe every second.

Readiness is worked out at most once per `ttl_s`: a burst of probes (every kubelet, the load
balancer, Docker's HEALTHCHECK, a monitoring system) shares one round of checks, and concurrent
probes wait for the round already running instead of starting their own. So the store sees at
most one cheap query per second, whatever the probe rate. Each check has a deadline, so a hung
database makes the probe fail in time instead of hanging it.

A failed check is named in the answer with a fixed description and the exception's class, never
its message: driver errors can carry a DSN, a host name or a password.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from sluice.app import Services
from sluice.core.context import new_request_id
from sluice.http.asgi import Receive, Scope, Send, respond
from sluice.settings import SluiceConfig
from sluice.storage.backends.resp import RespClient

log = logging.getLogger("sluice.health")

TTL_S = 1.0  # how long a readiness answer is reused
CHECK_TIMEOUT_S = 0.8  # below the 1 s a Kubernetes probe waits by default
_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")

_ALIVE = b'{"status":"ok"}'


async def alive(scope: Scope, receive: Receive, send: Send) -> None:
    """Liveness: answering at all means the event loop runs. No I/O, so a store outage never
    gets a healthy process restarted (that is readiness' job: take it out of rotation)."""
    await respond(send, 200, _ALIVE, "application/json", {"x-request-id": new_request_id()})


class CheckFailed(Exception):
    """A check's own verdict (not an exception of the thing checked); its message is safe to show."""


Check = Callable[[], Awaitable[str]]  # returns what it found ("ok", "disabled", ...), raises when unready


@dataclass(frozen=True, slots=True)
class Verdict:
    ready: bool
    checks: dict[str, str]
    failed: tuple[str, ...]
    at: float

    def body(self) -> bytes:
        doc: dict[str, object] = {"status": "ready" if self.ready else "unready", "checks": self.checks}
        if self.failed:
            doc["failed"] = list(self.failed)
        return orjson.dumps(doc)


def scrub(text: str) -> str:
    """The text with credentials in URLs removed (`postgresql://user:pw@host` -> `postgresql://***@host`),
    for the server's own log."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def _writable_dir(path: str | Path) -> bool:
    """Whether a file at `path` can be created or appended to (its directory is writable, and the
    file itself when it exists). Two access(2) calls: no file is written."""
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    if p.exists():
        return os.access(p, os.W_OK)
    return os.access(directory, os.W_OK | os.X_OK)


class Readiness:
    """The `/readyz` route. `draining = True` (set by a graceful shutdown) answers 503 at once, so
    load balancers stop sending new requests while streams in flight finish."""

    def __init__(
        self,
        services: Services,
        *,
        ttl_s: float = TTL_S,
        timeout_s: float = CHECK_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._services = services
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._last: Verdict | None = None
        self._round: asyncio.Lock | None = None
        self.draining = False
        self.rounds = 0  # rounds of checks run (tests and the docs' claim of one per second)
        self.checks: dict[str, Check] = {
            "config": self._config,
            "store": self._store,
            "redis": self._redis,
            "audit": self._audit,
            "local_files": self._local_files,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {"x-request-id": new_request_id(), "cache-control": "no-store"}
        if self.draining:
            body = orjson.dumps({"status": "draining", "checks": {}, "failed": ["draining"]})
            await respond(send, 503, body, "application/json", headers)
            return
        verdict = await self.verdict()
        await respond(send, 200 if verdict.ready else 503, verdict.body(), "application/json", headers)

    async def verdict(self) -> Verdict:
        last = self._last
        if last is not None and self._clock() - last.at < self._ttl_s:
            return last
        if self._round is None:
            self._round = asyncio.Lock()
        async with self._round:  # one round at a time; the probes queued behind it reuse its answer
            last = self._last
            if last is not None and self._clock() - last.at < self._ttl_s:
                return last
            verdict = await self._run()
            self._remember(verdict)
            return verdict

    def _remember(self, verdict: Verdict) -> None:
        before = self._last
        self._last = verdict
        # Logged on a change only: a probe every second must not fill the log.
        if before is None or before.failed != verdict.failed:
            if verdict.ready:
                if before is not None:
                    log.warning("ready again")
            else:
                log.warning("not ready: %s", ", ".join(f"{n} ({verdict.checks[n]})" for n in verdict.failed))

    async def _run(self) -> Verdict:
        self.rounds += 1
        names = list(self.checks)
        results = await asyncio.gather(*(self._bounded(name) for name in names))
        checks = dict(zip(names, (text for text, _ in results), strict=True))
        failed = tuple(name for name, (_, ok) in zip(names, results, strict=True) if not ok)
        return Verdict(not failed, checks, failed, self._clock())

    async def _bounded(self, name: str) -> tuple[str, bool]:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self.checks[name](), True
        except TimeoutError:
            return f"no answer within {self._timeout_s:g} s", False
        except CheckFailed as exc:
            return str(exc), False
        except Exception as exc:
            log.debug("readiness check %s failed: %s", name, scrub(f"{type(exc).__name__}: {exc}"))
            return f"unreachable ({type(exc).__name__})", False

    # -- the checks -------------------------------------------------------------------------------

    async def _config(self) -> str:
        # The file was parsed before the app was built; what can still be missing is the live
        # configuration (the file merged with the store's objects) built at start-up.
        if not isinstance(self._services.live.config, SluiceConfig):
            raise CheckFailed("live configuration not built")
        return "ok"

    async def _store(self) -> str:
        # One indexed single-row read, the one every replica already makes each second to follow
        # key changes: the cheapest query that proves the store answers.
        await self._services.store.keys_version()
        return "ok"

    async def _redis(self) -> str:
        governance = self._services.config.governance
        if governance.backend != "redis":
            return "not configured"
        # A connection of its own, opened and closed each round (at most once a second): a probe
        # never queues behind, or cuts, the limits' pipelined connection.
        client = RespClient(governance.redis_url, timeout=self._timeout_s)
        try:
            reply = await client.call("PING")
        finally:
            await client.close()
        if reply not in (b"PONG", "PONG"):
            raise CheckFailed("unexpected reply to PING")
        return "ok"

    async def _audit(self) -> str:
        audit = self._services.audit
        if not audit.enabled:
            return "disabled"
        # The chain head is read before each append: reading it proves the audit table answers.
        await self._services.store.last_audit()
        checkpoint = getattr(audit, "_checkpoint_path", None)  # resolved by the audit log for this store
        if checkpoint is not None and not _writable_dir(checkpoint):
            raise CheckFailed("checkpoint file not writable")
        return "ok"

    async def _local_files(self) -> str:
        # Where the request log spills and the spend journal goes when the store is down: if these
        # cannot be written either, a store outage loses records or refuses budgeted answers.
        config = self._services.config
        for what, path in (
            ("request log spill", config.request_log.spill_path),
            ("spend journal", config.governance.spend_journal_path),
        ):
            if not _writable_dir(path):
                raise CheckFailed(f"{what} directory not writable")
        return "ok"
