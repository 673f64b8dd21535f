"""The translation bridge: a caller of one API surface reaches a provider of another.

Pass-through stays the rule: when the provider speaks the caller's format the engine never comes
here. Otherwise one `Translation` per attempt carries the request across, through the canonical
types (`sluice.core.canonical`) and the codecs (`sluice.formats.codecs`):

    caller's body --decode--> ChatRequest --encode--> provider's body (model = the routed target)
    provider's answer --decode--> ChatResponse / stream events --encode--> caller's format

- `plan`: which format a provider gets (`target_of`), whether a caller can reach it (`reaches`),
  and the per-attempt `Translation` (`bridge_for`), the request decoded once per request.
- `bridge`: the `Translation` itself: request body, whole answer, stream, upstream errors.
- `counts`: token counts in each caller's shape, and the local estimate for providers that
  cannot count.

Metering never changes: the engine observes the provider's own bytes (usage, budget cut-offs,
content capture) before they come here, so a translated stream is billed exactly like a native one.
Errors are not rendered here either: an upstream error body becomes a canonical `Failure` that the
HTTP edge (`http/errors.py`) turns into the caller's error shape, and an in-stream failure becomes
a `SluiceError` the edge sends as the caller's in-stream error event.
"""

from sluice.translation.bridge import Translation, kind_of
from sluice.translation.counts import count_body, local_count
from sluice.translation.plan import bridge_for, decode, reachable, reaches, request_wire, target_of

__all__ = [
    "Translation",
    "bridge_for",
    "count_body",
    "decode",
    "kind_of",
    "local_count",
    "reachable",
    "reaches",
    "request_wire",
    "target_of",
]
