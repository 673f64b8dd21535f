"""Session caps, runaway detection and the kill switch (docs/sessions-control.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from sluice.settings.base import _check_duration, _Strict
from sluice.settings.governance import _Scoped
from sluice.settings.session_caps import _SessionCap


class SessionCapConfig(_SessionCap, _Scoped):
    """A cap every session of a key (of a team's keys, of a customer's keys) gets for itself."""


class RunawayConfig(_Strict):
    """Runaway detection for the sessions of one key, team, customer or access profile (none of
    them: every key). Each detection is an audit event and an alert; `pause` also stops the
    session (its next requests are refused until `sluice resume session`)."""

    id: str = Field(min_length=1)
    virtual_key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    profile_id: str | None = None
    # Spend of one session in the last `spend_rate_window` above this rate (dollars per hour).
    spend_rate_usd_per_hour: Decimal | None = Field(default=None, gt=0)
    spend_rate_window: str = "15m"
    # The same tool call (name and arguments) failing this many times in the conversation.
    tool_loop_repeats: int | None = Field(default=None, ge=2)
    # A session running longer than this many hours since its first request.
    max_session_hours: float | None = Field(default=None, gt=0)
    action: Literal["warn", "pause"] = "warn"

    _window = field_validator("spend_rate_window")(classmethod(lambda cls, v: _check_duration(v)))

    @model_validator(mode="after")
    def _one_scope_and_a_detector(self) -> RunawayConfig:
        scopes = (self.virtual_key_id, self.team_id, self.customer_id, self.profile_id)
        if sum(x is not None for x in scopes) > 1:
            raise ValueError(f"runaway {self.id!r}: at most one of virtual_key_id, team_id, customer_id, profile_id")
        if self.spend_rate_usd_per_hour is None and self.tool_loop_repeats is None and self.max_session_hours is None:
            raise ValueError(
                f"runaway {self.id!r} detects nothing: set spend_rate_usd_per_hour, tool_loop_repeats "
                "or max_session_hours"
            )
        return self


class KillSwitchConfig(_Strict):
    # How often each replica reads the stops' version from the store: a stop applies everywhere
    # within this interval (plus one store read).
    poll_interval_s: float = Field(default=0.25, gt=0, le=1.0)
