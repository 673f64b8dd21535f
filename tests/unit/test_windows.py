from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sluice.core.windows import Duration, window_at


def t(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize("text", ["0d", "1x", "d", "-1h", "1.5h", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        Duration.parse(text)


def test_calendar_aligned_day_week_month_year() -> None:
    now = t(2026, 11, 29, 13, 45, 10)  # a Sunday
    d = window_at(now, Duration.parse("1d"), calendar_aligned=True)
    assert (d.start, d.end) == (t(2026, 11, 29), t(2026, 11, 30))
    w = window_at(now, Duration.parse("1w"), calendar_aligned=True)
    assert (w.start, w.end) == (t(2026, 11, 23), t(2026, 11, 30))  # Monday to Monday
    assert w.start.weekday() == 0
    m = window_at(now, Duration.parse("1M"), calendar_aligned=True)
    assert (m.start, m.end) == (t(2026, 11, 1), t(2026, 12, 1))
    dec = window_at(t(2026, 12, 31, 23, 59, 59), Duration.parse("1M"), calendar_aligned=True)
    assert dec.end == t(2027, 1, 1)
    y = window_at(now, Duration.parse("1Y"), calendar_aligned=True)
    assert (y.start, y.end) == (t(2026, 1, 1), t(2027, 1, 1))
    q = window_at(now, Duration.parse("3M"), calendar_aligned=True)
    assert (q.start, q.end) == (t(2026, 10, 1), t(2027, 1, 1))


def test_window_resets_at_the_exact_instant() -> None:
    d = Duration.parse("1M")
    before = window_at(t(2026, 11, 30, 23, 59, 59), d, calendar_aligned=True)
    after = window_at(t(2026, 12, 1, 0, 0, 0), d, calendar_aligned=True)
    assert before.end == after.start == t(2026, 12, 1)
    assert before.key != after.key


def test_rolling_windows_follow_the_anchor() -> None:
    anchor = t(2026, 11, 1, 9, 30)
    d = Duration.parse("1d")
    w = window_at(t(2026, 11, 3, 9, 29, 59), d, calendar_aligned=False, anchor=anchor)
    assert (w.start, w.end) == (t(2026, 11, 2, 9, 30), t(2026, 11, 3, 9, 30))
    w2 = window_at(t(2026, 11, 3, 9, 30), d, calendar_aligned=False, anchor=anchor)
    assert w2.start == t(2026, 11, 3, 9, 30)
    h = window_at(t(2026, 11, 1, 10, 0), Duration.parse("1h"), calendar_aligned=False, anchor=anchor)
    assert (h.start, h.end) == (t(2026, 11, 1, 9, 30), t(2026, 11, 1, 10, 30))


def test_rolling_months_clamp_to_month_end() -> None:
    anchor = t(2026, 1, 31, 12)
    m = window_at(t(2026, 2, 28, 13), Duration.parse("1M"), calendar_aligned=False, anchor=anchor)
    assert (m.start, m.end) == (t(2026, 2, 28, 12), t(2026, 3, 31, 12))
    first = window_at(t(2026, 2, 15), Duration.parse("1M"), calendar_aligned=False, anchor=anchor)
    assert (first.start, first.end) == (t(2026, 1, 31, 12), t(2026, 2, 28, 12))
