"""What a session cap limits (sluice.sessions.caps): in its own module, so both the caps attached
to keys, teams and customers and the access profiles' caps can use it."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from sluice.settings.base import _Strict


class _SessionCap(_Strict):
    max_cost: Decimal | None = Field(default=None, gt=0, description="dollars per session")
    # How long a session may run, from its first request (e.g. "4h"); shared by every replica.
    max_duration: str | None = None
    # A request with no session id under a cap: refused (400, it must name its session), or
    # counted as one session per key ("shared"), so leaving the header out never dodges the cap.
    without_session: Literal["refuse", "shared"] = "refuse"
    fail_open: bool = False

    _duration = field_validator("max_duration")(classmethod(lambda cls, v: _fixed_duration(v)))

    @model_validator(mode="after")
    def _caps_something(self) -> _SessionCap:
        if self.max_cost is None and self.max_duration is None:
            raise ValueError("a session cap needs max_cost, max_duration or both")
        return self


class ProfileSessionCap(_SessionCap):
    """A cap every session of every key derived from an access profile gets for itself."""

    id: str = Field(min_length=1)


def _fixed_duration(value: str | None) -> str | None:
    from sluice.core.windows import Duration

    if value is not None and Duration.parse(value).seconds is None:
        raise ValueError(f"max_duration {value!r}: use s, m, h, d or w (a session has no calendar months)")
    return value
