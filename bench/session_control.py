"""What session control adds to a request, against parsing its body, in the same run.

    python -m bench.session_control [--turns 200] [--rounds 30]

An agent conversation of `--turns` tool calls (Anthropic shape, each a `tool_use` and its
`tool_result`, a third of them errors, about 600 bytes a turn) is parsed with orjson (the floor any
gateway pays: the engine parses every body), then measured, CPU microseconds per request (process
time, the minimum over rounds):
- `tool loop scan`: `failing_calls` over the parsed conversation (only for keys a runaway rule with
  `tool_loop_repeats` covers);
- `stop check`: `Stops.check` with 1,000 stops in force (sessions, keys, teams), and with none
  (the common case: the engine skips it when nothing is stopped);
- `session_key`: the canonical form of a session id (caps, stops, detectors).
Written to bench/results/session_control.json.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sluice.sessions.ids import session_key
from sluice.sessions.stops import Stops
from sluice.sessions.tool_loops import failing_calls
from sluice.storage.records import Stop, VirtualKey

RESULTS = Path(__file__).resolve().parent / "results"


def conversation(turns: int) -> bytes:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "fix the failing tests"}]
    for i in range(turns):
        args = {"command": f"pytest tests/test_{i % 7}.py -x", "description": "Run one test file", "timeout": 120}
        use = {"type": "tool_use", "id": f"toolu_{i:06d}", "name": "Bash", "input": args}
        messages.append({"role": "assistant", "content": [use]})
        result = {"type": "tool_result", "tool_use_id": f"toolu_{i:06d}", "content": "x" * 300, "is_error": i % 3 == 0}
        messages.append({"role": "user", "content": [result]})
    return orjson.dumps({"model": "claude-sonnet-4-6", "max_tokens": 32000, "messages": messages})


def per_call_us(fn: Callable[[], object], rounds: int, inner: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(inner):
            fn()
        best = min(best, (time.process_time() - start) / inner)
    return best * 1e6


class _NoStore:
    async def stops_version(self) -> int:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    body = conversation(args.turns)
    doc = orjson.loads(body)
    now = datetime.now(UTC)
    stops = Stops(_NoStore(), None)  # type: ignore[arg-type]
    key = VirtualKey("vk-bench", "bench", "h", "h", (), team_id="team-bench")
    empty = {"check (no stops)": per_call_us(lambda: stops.any and stops.check(key, "SESSION-1"), args.rounds, 20_000)}
    many = [Stop(i, ("session", "virtual_key", "team")[i % 3], f"t{i}", None, "r", "a", now) for i in range(1000)]
    stops._index(many)
    results = {
        "body_bytes": len(body),
        "turns": args.turns,
        "parse_us": per_call_us(lambda: orjson.loads(body), args.rounds, 50),
        "tool_loop_scan_us": per_call_us(lambda: failing_calls(doc), args.rounds, 50),
        "stop_check_none_us": empty["check (no stops)"],
        "stop_check_1000_us": per_call_us(lambda: stops.check(key, "SESSION-1"), args.rounds, 20_000),
        "session_key_us": per_call_us(lambda: session_key("3f1c0e4a-9b7d-4c2e-8a55-0d6f1e2b3c4d"), args.rounds, 20_000),
    }
    results["tool_loop_scan_vs_parse"] = round(results["tool_loop_scan_us"] / results["parse_us"], 3)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "session_control.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
