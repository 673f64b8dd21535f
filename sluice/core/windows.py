"""Budget and rate-limit windows (pure).

A window is `N` units long (`s`, `m`, `h`, `d`, `w`, `M`, `Y`). Rolling windows (the default)
follow each other back to back from an anchor (when the budget was first configured);
calendar-aligned windows start at the UTC start of the day, week (Monday), month or year, N at a
time counted from the Unix epoch (so `2d` aligned windows are the same everywhere).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_SPEC = re.compile(r"^\s*(\d+)\s*([smhdwMY])\s*$")
_FIXED = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Duration:
    count: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> Duration:
        m = _SPEC.match(text)
        if not m or int(m.group(1)) <= 0:
            raise ValueError(
                f"invalid duration {text!r}: use a positive number and one of s, m, h, d, w, M (month), Y (year), "
                "e.g. 30s, 1h, 1d, 1w, 1M"
            )
        return cls(int(m.group(1)), m.group(2))

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"

    @property
    def seconds(self) -> int | None:
        """Fixed length in seconds, or None for months and years."""
        return self.count * _FIXED[self.unit] if self.unit in _FIXED else None


@dataclass(frozen=True, slots=True)
class Window:
    start: datetime
    end: datetime

    @property
    def key(self) -> int:
        """A stable id of the window: its start as Unix seconds."""
        return int(self.start.timestamp())

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.end - now).total_seconds())


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + (moment.month - 1) + months
    return moment.replace(year=index // 12, month=index % 12 + 1, day=1)


def window_at(now: datetime, duration: Duration, *, calendar_aligned: bool, anchor: datetime | None = None) -> Window:
    if calendar_aligned:
        return _aligned(now, duration)
    base = anchor or _EPOCH
    if now < base:
        base = now
    if duration.unit in ("M", "Y"):
        months = duration.count * (12 if duration.unit == "Y" else 1)
        elapsed = (now.year - base.year) * 12 + (now.month - base.month)
        offset = (elapsed // months) * months
        if _shift_months(base, offset) > now:
            offset -= months
        # Both ends from the anchor, so a Jan 31 anchor gives Feb 28 -> Mar 31, not Mar 28.
        return Window(_shift_months(base, offset), _shift_months(base, offset + months))
    step = duration.seconds
    assert step is not None
    periods = int((now - base).total_seconds() // step)
    start = base + timedelta(seconds=periods * step)
    return Window(start, start + timedelta(seconds=step))


def _shift_months(moment: datetime, months: int) -> datetime:
    """Same day-of-month and time, clamped to the month's last day (Jan 31 + 1M = Feb 28/29)."""
    first = _add_months(moment.replace(day=1), months)
    next_first = _add_months(first, 1)
    last_day = (next_first - timedelta(days=1)).day
    return first.replace(day=min(moment.day, last_day))


def _aligned(now: datetime, duration: Duration) -> Window:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if duration.unit in ("s", "m", "h", "d"):
        step = duration.seconds
        assert step is not None
        periods = int((now - _EPOCH).total_seconds() // step)
        start = _EPOCH + timedelta(seconds=periods * step)
        return Window(start, start + timedelta(seconds=step))
    if duration.unit == "w":
        weeks = (midnight - _FIRST_MONDAY).days // 7
        start = _FIRST_MONDAY + timedelta(weeks=(weeks // duration.count) * duration.count)
        return Window(start, start + timedelta(weeks=duration.count))
    months = duration.count * (12 if duration.unit == "Y" else 1)
    index = now.year * 12 + (now.month - 1)
    start_index = (
        (index // months) * months if duration.unit == "M" else (now.year // duration.count) * duration.count * 12
    )
    start = datetime(start_index // 12, start_index % 12 + 1, 1, tzinfo=UTC)
    return Window(start, _add_months(start, months))
