from __future__ import annotations

import pytest

from sluice.audit.redact import redact


@pytest.mark.parametrize(
    ("secret", "kind"),
    [
        ("sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "anthropic_key"),
        ("sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789", "openai_key"),
        ("sk-sluice-Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5", "sluice_key"),
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "github_token"),
        ("xoxb-123456789012-abcdefghijklmnop", "slack_token"),
        ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "google_api_key"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
    ],
)
def test_known_secret_shapes_are_removed(secret: str, kind: str) -> None:
    out = redact(f"please use {secret} for the deploy")
    assert secret not in out and f"[REDACTED:{kind}]" in out


def test_private_keys_and_assignments() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----"
    assert redact(f"key:\n{pem}\nend") == "key:\n[REDACTED:private_key]\nend"
    assert redact('DB_PASSWORD="hunter2hunter2"') == "DB_PASSWORD=[REDACTED:secret]"
    assert redact("Authorization: Bearer abcdefghijklmnopqrstuvwxyz") == "Authorization: [REDACTED:bearer_token]"


def test_ordinary_text_is_untouched() -> None:
    text = "Refactor the sk-learn pipeline; the token count is 1200 and the password policy says 12 chars."
    assert redact(text) == text


def test_private_keys_are_redacted_as_the_lazy_expression_would_on_random_text() -> None:
    import random
    import re

    from sluice.audit.redact import _private_keys

    lazy = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
    pieces = [
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "-----END EC PRIVATE KEY-----",
        "MIIE",
        "\n",
        " ",
        "-----",
        "PRIVATE KEY-----",
        "x",
    ]
    rng = random.Random(11)
    for _ in range(5_000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        assert _private_keys(text) == lazy.sub("[REDACTED:private_key]", text), text


def test_repeated_key_headers_without_a_footer_are_read_once() -> None:
    # 0.68 s of CPU for 64 KB of these before (each header searched the rest for a footer), 10.6 s
    # for 256 KB: the search must be linear, so a 4 MB capture must come back, unchanged.
    from sluice.audit.redact import _private_keys

    text = "-----BEGIN PRIVATE KEY-----" * 150_000
    assert _private_keys(text) is text
    assert _private_keys(text + "-----END PRIVATE KEY-----") == "[REDACTED:private_key]"
