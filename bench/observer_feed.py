"""What the stream observer costs per chunk, per wire format: `python -m bench.observer_feed`.

The observer (`sluice.metering.stream_observer`) sees every chunk of every stream the gateway relays,
so its `feed()` is on the hot path. Each wire's stream is made by that wire's own stream encoder (a
message start, `--deltas` text deltas, the finish with usage), delivered one event per chunk as
upstreams do, and fed through a fresh observer `--streams` times; reported in µs per stream and ns
per chunk of CPU time (best of `--repeat`), plain (usage and completion only) and with output
counting and content capture on (what a budget cut-off and audit content capture turn on).
Compare runs of the same machine only.
"""

from __future__ import annotations

import argparse
import time

from sluice.core.canonical import BlockStart, BlockStop, ChatRequest, Finish, Start, StreamEvent, TextDelta
from sluice.core.types import Usage, WireFormat
from sluice.formats.codecs import codec_for
from sluice.metering import stream_observer

WIRES = (
    WireFormat.ANTHROPIC_MESSAGES,
    WireFormat.OPENAI_CHAT,
    WireFormat.OPENAI_RESPONSES,
    WireFormat.GEMINI,
    WireFormat.BEDROCK_CONVERSE,
)


def stream_of(wire: WireFormat, deltas: int) -> list[bytes]:
    request = ChatRequest(model="bench-model", messages=[], stream=True)
    encoder = codec_for(wire).stream_encoder(request)
    events: list[StreamEvent] = [Start("msg_bench", "bench-model", Usage(input_tokens=100)), BlockStart(0, "text")]
    events += [TextDelta(0, f"word {n} of a streamed answer, ") for n in range(deltas)]
    events += [BlockStop(0), Finish("end_turn", Usage(input_tokens=100, output_tokens=deltas * 8))]
    chunks = [encoder.encode(event) for event in events]
    chunks.append(encoder.close())
    return [c for c in chunks if c]


def run(wire: WireFormat, chunks: list[bytes], streams: int, count: bool) -> float:
    """CPU seconds per stream (process time: other processes on a shared machine do not count)."""
    hide = wire is WireFormat.OPENAI_CHAT
    started = time.process_time()
    for _ in range(streams):
        observer = stream_observer(wire, hide)
        if count:
            observer.count_output = True
            observer.captured = []
        for chunk in chunks:
            observer.feed(chunk)
    elapsed = time.process_time() - started
    assert observer.completed and observer.usage.output_tokens, (wire, observer.usage)
    return elapsed / streams


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.observer_feed", description=__doc__)
    p.add_argument("--streams", type=int, default=3000)
    p.add_argument("--deltas", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5, help="best of this many runs")
    args = p.parse_args(argv)
    print(f"{'wire':<20} {'chunks':>6} {'µs/stream':>10} {'ns/chunk':>9} {'counting µs/stream':>19} {'ns/chunk':>9}")
    for wire in WIRES:
        chunks = stream_of(wire, args.deltas)
        plain = min(run(wire, chunks, args.streams, False) for _ in range(args.repeat))
        counting = min(run(wire, chunks, args.streams, True) for _ in range(args.repeat))
        n = len(chunks)
        print(
            f"{wire.value:<20} {n:>6} {plain * 1e6:>10.1f} {plain * 1e9 / n:>9.0f}"
            f" {counting * 1e6:>19.1f} {counting * 1e9 / n:>9.0f}"
        )


if __name__ == "__main__":
    main()
