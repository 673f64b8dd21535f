"""The codec of each wire format that has one: `codec_for(wire)` (its record's `codec`)."""

from __future__ import annotations

from sluice.core.types import WireFormat
from sluice.formats.codec import Codec
from sluice.formats.registry import record_of


def codec_for(wire: WireFormat) -> Codec:
    """Raises KeyError for a format without a codec (embeddings)."""
    codec = record_of(wire).codec
    if codec is None:
        raise KeyError(wire)
    return codec
