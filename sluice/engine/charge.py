"""The one owner of a request's reservation: the only code that calls `Limits.admit`, `extend`,
`settle` and `release`.

An attempt reserves its worst case before the provider is called; a stream extends the
reservation block by block while it runs; an attempt that leads nowhere releases it (a retry or
a fallback reserves anew); the attempt that answers is settled once, with what it really cost.
Settling and releasing are idempotent, so every path that ends a request may ask for them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sluice.core.errors import ErrorKind, SluiceError
from sluice.governance.ledger_writer import SpendNotDurable
from sluice.governance.limits import Admission, Limits
from sluice.storage.records import VirtualKey

log = logging.getLogger("sluice.engine")


class Charge:
    __slots__ = (
        "_admission",
        "_key",
        "_limits",
        "_request_id",
        "_session_id",
        "_started_unix",
        "guards_output",
        "held",
        "input_estimate",
        "output_allowance",
        "reserved_pico",
        "settled",
        "tier",
        "usage_missing",
    )

    def __init__(
        self, limits: Limits, key: VirtualKey, request_id: str, started_unix: float, session_id: str | None = None
    ) -> None:
        self._limits = limits
        self._session_id = session_id  # the caller's session, for session caps
        self._key = key
        self._request_id = request_id
        self._started_unix = started_unix
        self._admission: Admission | None = None
        self.held = False  # an attempt passed every limit and is not settled or released: it is charged
        self.settled = False
        self.guards_output = False  # a limit counts what the model generates: a stream is watched
        self.reserved_pico = 0  # the worst case reserved: what an answer without usage is charged
        self.input_estimate = 0  # tokens, from the body size
        self.output_allowance = 0  # output tokens the reservation covers
        self.tier: tuple[str, str] = ("", "")  # (service_tier, speed) the request asked for
        self.usage_missing = False  # a whole answer that reported no usage (charged `reserved_pico`)

    @property
    def limited(self) -> bool:
        """Limits apply to the reservation (else settling only records the spend)."""
        return self._admission is not None

    @property
    def admission(self) -> Admission | None:
        """The attempt's reservation: the limits it passed and how they stood (None: no limits)."""
        return self._admission

    @property
    def budget_headers(self) -> dict[str, str]:
        """The budget and rate-limit state the admission saw, as the caller's headers say it."""
        return self._admission.headers if self._admission is not None else {}

    async def reserve(self, attempt: int, cost_pico: int, input_tokens: int, output_tokens: int) -> None:
        """Reserves attempt number `attempt`'s worst case; raises the limit's refusal."""
        self._admission = await self._limits.admit(
            f"{self._request_id}.{attempt}", self._key, cost_pico, input_tokens + output_tokens, self._session_id
        )
        self.held, self.settled = True, False
        self.guards_output = self._admission is not None and self._limits.guards_output(self._admission)
        self.reserved_pico, self.input_estimate, self.output_allowance = cost_pico, input_tokens, output_tokens

    async def extend(self, cost_pico: int, tokens: int) -> None:
        """Grows the reservation of a stream that outgrew it; raises the refusal that cuts it."""
        if self._admission is not None:
            await self._limits.extend(self._admission, cost_pico, tokens)
        self.output_allowance += tokens

    async def release(self) -> None:
        """Gives back the reservation of an attempt that led to nothing."""
        if not self.held:
            return
        self.held = False
        admission, self._admission = self._admission, None
        await self._limits.release(admission)

    async def settle(self, cost_pico: int, tokens: int) -> bool:
        """Charges the answer's real cost to every limit, durable in the ledger first. True when
        this call settled it (False: nothing is held, or it was settled already). Raises when the
        spend is durable nowhere: the answer must then not be served."""
        if not self.held:
            return False
        self.held, self.settled = False, True
        at = datetime.fromtimestamp(self._started_unix, UTC)
        row = self._limits.spend_row(self._admission, self._request_id, self._key, cost_pico, tokens, at)
        try:
            await self._limits.settle(self._admission, row)
        except SpendNotDurable:
            # Neither the store nor the local journal holds the cost: the answer is not served
            # (its last byte is still held back), rather than served unbilled.
            log.error("settlement of %s is durable nowhere; its answer is refused", self._request_id)
            raise SluiceError(
                ErrorKind.GATEWAY_INTERNAL,
                "The request's cost could not be recorded, so the answer is not served. Try again shortly.",
            ) from None
        except Exception:
            log.exception("settlement of %s failed", self._request_id)
        return True
