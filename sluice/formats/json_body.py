"""Re-encoding a request body the gateway changed (pure).

orjson reads JSON nested up to 1024 levels but writes at most 254, so a caller's body nested
between the two parses and then cannot be written back: every place that re-encodes a request
(the surfaces that reshape it, the engine, the format bridge, the providers) goes through
`encode_body`, which refuses such a body with a 400 instead of failing with a 500."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.core.errors import ErrorKind, SluiceError

MAX_DEPTH = 254  # orjson's limit when writing


def too_deep(detail: str = "") -> SluiceError:
    """The one refusal of a body nested past MAX_DEPTH (also raised by walks over a body that
    stop there rather than recurse without bound, such as the guardrails')."""
    return SluiceError(
        ErrorKind.CALLER_BAD_REQUEST,
        f"The request body cannot be forwarded: it is nested more than {MAX_DEPTH} levels deep{detail}.",
    )


def encode_body(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError as exc:
        raise too_deep(f" ({exc})") from None
