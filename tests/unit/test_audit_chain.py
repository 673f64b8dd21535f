from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from sluice.audit.chain import AuditRecord, make_record, verify

KEYS = {"k1": b"k1-secret-key-material", "k2": b"k2-secret-key-material"}
T0 = datetime(2026, 11, 29, 12, tzinfo=UTC)


def chain(n: int, rotate_at: int | None = None) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    for i in range(n):
        key_id = "k2" if rotate_at is not None and i >= rotate_at else "k1"
        prev = out[-1] if out else None
        out.append(
            make_record(
                KEYS[key_id],
                key_id,
                prev,
                T0 + timedelta(seconds=i),
                "request",
                f"vk-{i % 3}",
                {"model": "claude-sonnet-4-6", "status": 200, "cost_pico": i * 1000},
            )
        )
    return out


def test_intact_chain_verifies_across_a_key_rotation() -> None:
    verdict = verify(chain(20, rotate_at=10), KEYS)
    assert verdict.ok and verdict.checked == 20


@pytest.mark.parametrize(
    ("tamper", "words", "at"),
    [
        (lambda c: c.__setitem__(5, dataclasses.replace(c[5], data={**c[5].data, "status": 403})), "modified", 6),
        (lambda c: c.pop(7), "record 8 is missing", 9),
        (lambda c: c.insert(3, dataclasses.replace(c[3], seq=4)), "record 4 appears after record 4", 4),
        (lambda c: c.__setitem__(slice(4, 6), [c[5], c[4]]), "record 5 is missing", 6),
    ],
)
def test_each_kind_of_tampering_is_named(tamper, words: str, at: int) -> None:  # type: ignore[no-untyped-def]
    records = chain(10)
    tamper(records)
    verdict = verify(records, KEYS)
    assert not verdict.ok and words in (verdict.problem or "") and verdict.at_seq == at


def test_a_resealed_record_without_the_key_breaks_the_link() -> None:
    records = chain(5)
    forged = make_record(b"attacker key", "k1", records[1], T0, "request", "vk-x", {"status": 200})
    records[2] = forged
    assert "record 3 was modified" in (verify(records, KEYS).problem or "")


def test_floats_are_refused() -> None:
    with pytest.raises(ValueError, match="no floats"):
        make_record(KEYS["k1"], "k1", None, T0, "request", "vk", {"latency": 1.5})


def test_the_mac_is_hmac_sha256_of_the_previous_mac_and_the_canonical_body() -> None:
    """What a verifier outside the gateway recomputes (and what chains sealed before hold)."""
    import hashlib
    import hmac

    import orjson

    from sluice.audit.chain import seal

    body = {"seq": 2, "ts": "2026-12-02T00:00:00+00:00", "kind": "request", "actor": "vk", "data": {"b": 1, "a": [2]}}
    body |= {"key_id": "k1", "prev_mac": "ab" * 32}
    expected = hmac.new(b"key", b"ab" * 32 + orjson.dumps(body, option=orjson.OPT_SORT_KEYS), hashlib.sha256)
    assert seal(b"key", body) == seal(b"key", body, floats_checked=True) == expected.hexdigest()
