"""Authentication failures on every surface (inference, /v1/models, /mcp, /api, /scim/v2): the
per-address throttle, and their audit records, counted instead of written one by one.

The first failure of a (surface, address, reason) is written at once, with `count: 1`; repeats
within `audit_interval_s` are only counted, and written as one record with their `count` when
the interval ends. A flood of wrong keys from one address so costs at most two records per
interval, and a flood from many addresses at most `tracked_addresses` per interval (beyond that,
one `overflow` record per surface carries the rest).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sluice.audit.log import AuditLog
from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.tasks import cancel, spawn
from sluice.core.throttle import FailureThrottle
from sluice.settings import AuthGuardConfig

log = logging.getLogger("sluice.audit")
AUTH_FAILURE = "auth_failure"
_Key = tuple[str, str, str]  # surface, address, reason
_T = TypeVar("_T")
# The refusals that are authentication failures, by the reason their records carry.
REASONS = {
    ErrorKind.CALLER_MISSING_KEY: "missing_credential",
    ErrorKind.CALLER_INVALID_KEY: "invalid_credential",
    ErrorKind.POLICY_KEY_INACTIVE: "inactive_credential",
}


@dataclass(slots=True)
class _Window:
    started: float
    repeats: int = 0
    last: float = 0.0


class AuthGuard:
    def __init__(
        self, config: AuthGuardConfig, audit: AuditLog, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._audit = audit
        self._clock = clock
        self.throttle = FailureThrottle(
            config.failures_burst, config.failures_per_minute, max_addresses=config.tracked_addresses, clock=clock
        )
        self._windows: dict[_Key, _Window] = {}
        self._flusher: asyncio.Task[None] | None = None

    def retry_after(self, address: str) -> float | None:
        """Seconds this address must wait before trying to authenticate again (None: it may)."""
        if not self.config.throttle:
            return None
        return self.throttle.retry_after(address)

    async def screen(self, surface: str, address: str, attempt: Callable[[bool], Awaitable[_T]]) -> _T:
        """Runs `attempt(cached_only)` for a caller with a virtual key. An address that failed too
        often still gets in with a valid key (colleagues behind one NAT or proxy are not locked
        out by one misconfigured agent), but its key is looked up in memory only, and a failure
        is answered 429 instead of 401: guessing gets slower, never cheaper."""
        wait = self.retry_after(address)
        try:
            return await attempt(wait is not None)
        except SluiceError as err:
            if wait is None:
                await self.refused(surface, address, err)
                raise
            if err.kind not in REASONS:
                raise
            await self.failed(surface, address, "throttled", throttled=True)
            raise self._throttled(wait) from None

    @staticmethod
    def _throttled(wait: float) -> SluiceError:
        return SluiceError(
            ErrorKind.POLICY_RATE_LIMITED,
            f"Too many failed authentication attempts from your address; try again in {max(1, round(wait))} s.",
            retry_after=wait,
        )

    async def check(self, surface: str, address: str) -> None:
        """Raises the 429 of an address that failed too often (counted in the audit log), before
        any credential is checked: for the admin surfaces (/api, /scim/v2, sign-in)."""
        wait = self.retry_after(address)
        if wait is None:
            return
        await self.failed(surface, address, "throttled", throttled=True)
        raise self._throttled(wait)

    async def refused(self, surface: str, address: str, err: SluiceError) -> bool:
        """Records `err` when it is an authentication failure; True when it was one."""
        reason = REASONS.get(err.kind)
        if reason is None:
            return False
        await self.failed(surface, address, reason)
        return True

    async def failed(self, surface: str, address: str, reason: str, *, throttled: bool = False) -> None:
        """One refused credential (or, `throttled`, one attempt refused before it was checked,
        which spends nothing). Never raises: the caller is refused whatever the audit log does."""
        if not throttled:
            self.throttle.failed(address)
        now = self._clock()
        key = (surface, address, reason)
        window = self._windows.get(key)
        if window is None and len(self._windows) >= self.config.tracked_addresses:
            key = (surface, "*", "overflow")
            window = self._windows.get(key)
        if window is not None:
            window.repeats += 1
            window.last = now
            return
        self._windows[key] = _Window(now, last=now)
        await self._write(key, 1, now, now)

    async def flush(self, *, force: bool = False) -> int:
        """Writes the counted repeats of every interval that ended (all of them, `force`), and
        forgets quiet windows. Returns the number of records written."""
        now = self._clock()
        written = 0
        for key, window in list(self._windows.items()):
            if not force and now - window.started < self.config.audit_interval_s:
                continue
            if window.repeats:
                await self._write(key, window.repeats, window.started, window.last)
                written += 1
            del self._windows[key]
        return written

    async def _write(self, key: _Key, count: int, first: float, last: float) -> None:
        surface, address, reason = key
        data = {
            "surface": surface,
            "address": address,
            "reason": reason,
            "count": count,
            "window_ms": int((last - first) * 1000),  # ints: the audit log writes floats as text
        }
        try:
            await self._audit.append(AUTH_FAILURE, f"address:{address}", data)
        except Exception:
            log.exception("authentication failures from %s could not be recorded", address)

    def start(self) -> None:
        if self._flusher is None:
            self._flusher = spawn(self._flush_loop(), name="auth-failure-audit")

    async def stop(self) -> None:
        await cancel(self._flusher)
        self._flusher = None
        await self.flush(force=True)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(min(self.config.audit_interval_s, 5.0))
            await self.flush()
