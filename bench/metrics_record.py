"""The hot-path cost of the request metrics: `Observer.finished` on a typical request log entry
(one attempt, timed), against the same call with metrics off. Run: python -m bench.metrics_record"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from sluice.core.context import Attempt, RequestRecord
from sluice.core.types import Operation, WireFormat
from sluice.observability.metrics import RequestMetrics
from sluice.observability.observer import Observer
from sluice.storage.records import RequestLogEntry


class _Ctx:
    def __init__(self, attempts: list[Attempt]) -> None:
        self.request = RequestRecord("req_x", WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE, "/v1/messages")
        self.attempts = attempts


def _entry(i: int) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=f"req_{i}", ts=datetime.now(UTC), path="/v1/messages", surface="anthropic_messages",
        status=200, decision="allow", provider="anthropic", model=f"claude-haiku-4-5-{i % 4}",
        team_id=f"team-{i % 8}", virtual_key_id=f"vk-{i % 100}", input_tokens=1200, output_tokens=300,
        cache_read_tokens=800, cost_pico=4_200_000_000, latency_ms=812.5, ttfb_ms=430.1,
    )  # fmt: skip


def run(n: int, observer: Observer) -> float:
    entries = [_entry(i) for i in range(64)]
    ctxs = [_Ctx([Attempt(e.model or "", "anthropic", "primary", "ok", status=200, sent=1.0, waited=0.4)])
            for e in entries]  # fmt: skip
    start = time.perf_counter()
    for i in range(n):
        observer.finished(ctxs[i & 63], entries[i & 63])
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for r in range(args.rounds):
        off = run(args.requests, Observer())
        on = run(args.requests, Observer(RequestMetrics()))
        keyed = run(args.requests, Observer(RequestMetrics(per_key=True)))
        print(f"round {r + 1}: metrics off {off:.2f} µs, on {on:.2f} µs (+{on - off:.2f}), "
              f"per_key {keyed:.2f} µs (+{keyed - off:.2f}) per request")  # fmt: skip


if __name__ == "__main__":
    main()
