from __future__ import annotations

from sluice.auth.session import Signer, cookie_value, set_cookie


def test_signed_cookies_resist_tampering_expiry_and_reuse_for_another_purpose() -> None:
    signer = Signer(b"k" * 32)
    value = signer.sign("session", {"uid": "u1"}, 60, now=1000)
    assert signer.verify("session", value, now=1010) == {"uid": "u1", "exp": 1060}
    assert signer.verify("session", value, now=1061) is None
    assert signer.verify("login", value, now=1010) is None
    payload, _, mac = value.partition(".")
    assert signer.verify("session", payload[:-2] + "xx." + mac, now=1010) is None
    assert Signer(b"o" * 32).verify("session", value, now=1010) is None


def test_cookie_helpers() -> None:
    assert cookie_value({"cookie": "a=1; sluice_session=v.m; b=2"}, "sluice_session") == "v.m"
    assert cookie_value({"cookie": "garbage;;=="}, "sluice_session") is None
    assert cookie_value({}, "x") is None
    flags = set_cookie("s", "v", max_age=5, secure=True)
    assert "HttpOnly" in flags and "SameSite=Lax" in flags and "Secure" in flags
