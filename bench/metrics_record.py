"""The hot-path cost of observability per request: `Observer.finished` on a typical request log
entry (one timed attempt) with the metrics off, on, and on per key; and `Observer.send` (the
wrapper timing each provider call) against calling the provider directly.
Times are CPU time of this process (time.process_time), so a busy machine's preemptions do not
count. Run: python -m bench.metrics_record"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime

from sluice.core.context import Attempt, RequestRecord
from sluice.core.types import Operation, WireFormat
from sluice.observability.metrics import RequestMetrics
from sluice.observability.observer import Observer
from sluice.providers.base import ProviderCall
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
    start = time.process_time()
    for i in range(n):
        observer.finished(ctxs[i & 63], entries[i & 63])
    return (time.process_time() - start) / n * 1e6


class _Provider:
    async def send(self, call: object) -> object:
        return call


async def _sends(n: int, observer: Observer | None) -> float:
    ctx, provider = _Ctx([]), _Provider()
    call = ProviderCall(WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE, "m", b"{}", {}, {}, "", False, None)
    attempt = Attempt("m", "anthropic")
    start = time.process_time()
    if observer is None:
        for _ in range(n):
            await provider.send(call)
    else:
        for _ in range(n):
            await observer.send(ctx, provider, call, attempt)  # type: ignore[arg-type]
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for r in range(args.rounds):
        off = run(args.requests, Observer())
        on = run(args.requests, Observer(RequestMetrics()))
        keyed = run(args.requests, Observer(RequestMetrics(per_key=True)))
        direct = asyncio.run(_sends(args.requests, None))
        wrapped = asyncio.run(_sends(args.requests, Observer()))
        print(f"round {r + 1}: finished: metrics off {off:.2f} µs, on {on:.2f} µs (+{on - off:.2f}), "
              f"per_key {keyed:.2f} µs (+{keyed - off:.2f}); send: direct {direct:.2f} µs, "
              f"observed {wrapped:.2f} µs (+{wrapped - direct:.2f}) per attempt")  # fmt: skip


if __name__ == "__main__":
    main()
