"""CPU cost of format translation, in-process, against the pass-through floor in the same run.

    python -m bench.translation [--iterations 300]

Pass-through reads the request once (orjson) and forwards bytes; translation decodes the caller's
body into canonical types, encodes it for the provider and serialises it, then does the reverse for
the answer. Measured on recorded payloads:
- the 115 KB request Claude Code really sends (tests/fixtures/claude_code), Anthropic -> OpenAI
  Chat and -> Gemini; Codex's Responses request (tests/fixtures/codex) -> Anthropic;
- a recorded OpenAI Chat stream with tool calls, re-encoded event by event as an Anthropic stream.
Figures are CPU microseconds (process time), the minimum over rounds, so other load on the machine
inflates them as little as possible.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from sluice.core.types import WireFormat
from sluice.formats.codecs import codec_for
from sluice.translation.bridge import kept_tools

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def cpu_us(fn: Callable[[], Any], iterations: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(iterations):
            fn()
        best = min(best, (time.process_time() - start) / iterations * 1e6)
    return best


def request_case(body: bytes, source: WireFormat, target: WireFormat, model: str) -> Callable[[], bytes]:
    src, dst = codec_for(source), codec_for(target)

    def run() -> bytes:
        request = src.decode_request(orjson.loads(body))
        request.model = model
        request.tools, _ = kept_tools(request, target)  # what the bridge does (Codex's web_search)
        return orjson.dumps(dst.encode_request(request))

    return run


def stream_case(raw: bytes, source: WireFormat, target: WireFormat) -> tuple[Callable[[], int], int]:
    src, dst = codec_for(source), codec_for(target)
    request = codec_for(target).decode_request({"model": "m", "messages": [], "max_tokens": 1})
    events = len(src.stream_decoder().feed(raw))

    def run() -> int:
        decoder, encoder = src.stream_decoder(), dst.stream_encoder(request)
        size = 0
        for event in decoder.feed(raw) + decoder.close():
            size += len(encoder.encode(event))
        return size + len(encoder.close())

    return run, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "translation.json")
    args = parser.parse_args()
    n = args.iterations

    claude = (FIXTURES / "claude_code" / "messages_request.json").read_bytes()
    codex = (FIXTURES / "codex" / "responses_request_other_vendor_model.json").read_bytes()
    rows: list[dict[str, Any]] = []

    def add(name: str, size: int, floor: float, cost: float) -> None:
        rows.append({"case": name, "bytes": size, "floor_us": round(floor, 1), "us": round(cost, 1)})

    floor = cpu_us(lambda: orjson.loads(claude), n)
    for target, model in ((WireFormat.OPENAI_CHAT, "gpt-4.1"), (WireFormat.GEMINI, "gemini-2.5-pro")):
        cost = cpu_us(request_case(claude, WireFormat.ANTHROPIC_MESSAGES, target, model), n)
        add(f"Claude Code request -> {target.value}", len(claude), floor, cost)
    floor = cpu_us(lambda: orjson.loads(codex), n)
    cost = cpu_us(request_case(codex, WireFormat.OPENAI_RESPONSES, WireFormat.ANTHROPIC_MESSAGES, "claude"), n)
    add("Codex request -> anthropic_messages", len(codex), floor, cost)

    stream = (FIXTURES / "openai" / "chat_completion_tool_calls_stream.sse").read_bytes()
    run, events = stream_case(stream, WireFormat.OPENAI_CHAT, WireFormat.ANTHROPIC_MESSAGES)
    floor = cpu_us(lambda: [orjson.loads(line[6:]) for line in stream.split(b"\n") if line[6:7] == b"{"], n * 10)
    cost = cpu_us(run, n * 10)
    add(f"OpenAI stream ({events} events) -> anthropic_messages", len(stream), floor, cost)

    print(f"python {platform.python_version()} on {platform.machine()}; CPU µs, min of 5 rounds")
    print(f"{'case':<50} {'bytes':>8} {'parse only':>11} {'translated':>11} {'× parse':>8}")
    for r in rows:
        ratio = r["us"] / r["floor_us"] if r["floor_us"] else float("nan")
        print(f"{r['case']:<50} {r['bytes']:>8} {r['floor_us']:>11} {r['us']:>11} {ratio:>8.1f}")
    args.out.write_text(json.dumps({"iterations": n, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
