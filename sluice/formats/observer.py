"""The one stream observer: watches a provider's stream pass by, in the provider's own format, and
collects what metering needs (usage, whether it completed, an in-stream error, the length of the
generated text for budget cut-offs, the text itself for content capture). What an event means is
the format's `EventReader` (its record's `reader`); the bytes pass unchanged, but for the OpenAI
Chat usage chunk the gateway asked for on the caller's behalf (`hide_usage`).

`feed()` runs on every chunk of every stream: readers look at raw bytes first and parse only the
few events that carry usage, completion or errors.
"""

from __future__ import annotations

from typing import Any

from sluice.core.types import Usage
from sluice.formats.record import EventReader


class StreamObserver:
    __slots__ = (
        "_quiet",
        "_read",
        "_split",
        "captured",
        "completed",
        "count_output",
        "error",
        "hide_usage",
        "output_chars",
        "usage",
    )  # fmt: skip

    def __init__(self, reader: EventReader[Any], *, hide_usage: bool = False) -> None:
        self._split = reader.splitter()
        self._read = reader.read
        self._quiet = reader.quiet
        self.hide_usage = hide_usage and reader.sse
        self.usage = Usage()
        self.error: str | None = None
        self.completed = False
        self.count_output = False  # measure generated text as it streams (for budget checks)
        self.output_chars = 0
        self.captured: list[str] | None = None  # keep the generated text too (audit content capture)

    def feed(self, chunk: bytes) -> bytes:
        events = self._split(chunk)
        read = self._read
        if not self.hide_usage:
            quiet = self._quiet
            if quiet and not self.count_output:
                for event in events:
                    if not event.startswith(quiet):
                        read(event, self)
            else:
                for event in events:
                    read(event, self)
            return chunk
        return b"".join(event + b"\n\n" for event in events if not read(event, self))
