"""What the per-API request rules of the fakes share: the refusal they return, model-family parsing, and the
signatures the fakes put on round-trip state (Anthropic thinking blocks, Gemini thought signatures) so they can
tell, on the next turn, whether a client sent back what it was given, unchanged.

Each ``rules_<api>.py`` module is a list of small functions, one rule each, with a comment citing where the provider
documents the rule (or, where the reference is silent, the provider's own error text as reported in public issues).
``check(doc, ...)`` runs them in order and returns the first refusal, which the fake server renders in the API's
own error format (status and body shape)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Refusal:
    """A request the real API would refuse: the message in the provider's words, and (OpenAI) the ``param`` and
    ``code`` of its error object."""

    message: str
    param: str | None = None
    code: str | None = None
    status: int = 400


Rule = Callable[..., Refusal | None]


def first_refusal(rules: Iterable[Rule], *args: Any) -> Refusal | None:
    for rule in rules:
        refused = rule(*args)
        if refused is not None:
            return refused
    return None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------------------------------
# Signatures the fakes issue for round-trip state, verifiable on the next turn (one secret per process)
# --------------------------------------------------------------------------------------------------------------------

_SECRET = secrets.token_bytes(32)


def sign(kind: str, payload: str) -> str:
    """An opaque signature binding ``payload`` (a thinking text, a function call) to this fake."""
    mac = hmac.new(_SECRET, kind.encode() + b"\0" + payload.encode(), hashlib.sha256).digest()
    # Base64, as the real ones are (google-genai decodes a thoughtSignature as bytes and encodes it back).
    return base64.b64encode(b"fake-" + kind.encode() + b"-" + mac).decode()


def signed(kind: str, payload: str, signature: Any) -> bool:
    """Whether ``signature`` is the one ``sign`` gave, in either base64 alphabet (google-genai sends bytes back
    URL-safe encoded)."""
    if not isinstance(signature, str):
        return False
    try:
        given = base64.b64decode(signature.replace("-", "+").replace("_", "/") + "==", validate=False)
    except ValueError:
        return False
    return hmac.compare_digest(given, base64.b64decode(sign(kind, payload)))


# --------------------------------------------------------------------------------------------------------------------
# Claude model families, as they appear in model ids on the API, Bedrock and Vertex
# --------------------------------------------------------------------------------------------------------------------

# claude-sonnet-4-5-20250929, claude-opus-4-1, anthropic.claude-haiku-4-5-20251001-v1:0, claude-opus-4-5@20251101,
# claude-sonnet-5; an eight-digit date is not a minor version (claude-sonnet-4-20250514 is Sonnet 4.0).
_CLAUDE = re.compile(r"claude-(opus|sonnet|haiku)-(\d+)(?:[-.](\d{1,2})(?!\d))?")


def claude_family(model: str) -> tuple[str, int, int] | None:
    match = _CLAUDE.search(model)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3) or 0)
