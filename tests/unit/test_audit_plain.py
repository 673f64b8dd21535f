"""sluice.audit.log.plain: its fast path gives the same value as the plain recursive walk it
replaced, for every JSON-ish input (subclasses, tuples, floats, non-text keys), so a chain sealed
before the change and one sealed after hold the same bytes and MACs."""

from __future__ import annotations

import enum
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.audit.chain import AuditRecord, make_record, verify
from sluice.audit.log import plain


def reference(value: Any) -> Any:
    """plain() as it was before its fast path (the definition of what it must return)."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): reference(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reference(v) for v in value]
    return value


class Kind(enum.StrEnum):
    A = "a"


class Level(enum.IntEnum):
    ONE = 1


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.sampled_from([Kind.A, Level.ONE]),
)
_keys = st.one_of(st.text(max_size=4), st.integers(0, 3), st.sampled_from([Kind.A, Level.ONE, True, None, 1.5]))
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(_keys, inner, max_size=4),
        st.dictionaries(_keys, inner, max_size=4).map(OrderedDict),
    ),
    max_leaves=20,
)


@given(st.dictionaries(_keys, _values, max_size=6))
@settings(max_examples=500, deadline=None)
def test_plain_is_the_reference_walk(data: dict[Any, Any]) -> None:
    got, want = plain(data), reference(data)
    assert got == want
    assert orjson.dumps(got, option=orjson.OPT_SORT_KEYS) == orjson.dumps(want, option=orjson.OPT_SORT_KEYS)


def _chain(walk: Any, items: list[dict[str, Any]]) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    ts = datetime(2026, 12, 2, tzinfo=UTC)
    for data in items:
        prev = out[-1] if out else None
        out.append(make_record(b"k" * 32, "k1", prev, ts, "request", "vk", walk(data), floats_checked=True))
    return out


def test_a_chain_sealed_with_either_walk_is_the_same_chain() -> None:
    items = [
        {"request_id": "r1", "status": 200, "tokens": {"input": 3, "output": 5}, "attempts": [{"p": "a", "ms": 1.25}]},
        {"request_id": "r2", "budget": {Kind.A: "1.5"}, "levels": (Level.ONE, 2.0), 7: None, "ok": True},
        {"content": {"request": "x" * 300, "response": "y"}, "content_sealing": "sha256"},
    ]
    before, after = _chain(reference, items), _chain(plain, items)
    assert [r.mac for r in before] == [r.mac for r in after]
    assert [r.data for r in before] == [r.data for r in after]
    assert verify(after, {"k1": b"k" * 32}).ok
