"""What `sole_keys` (sluice/http/inference.py) costs on real agent bodies, against orjson.loads of the
same body (the parse every request already pays), in the same run.

    python -m bench.sole_keys [--iterations 200]

Bodies: Claude Code's recorded request as bench/guardrails.py builds it (its tool definitions, one
of which nests a "model" key, plus ~100 KB of conversation: ~220 KB), the recorded request alone
(115 KB), and a small Messages body. `previous` is the check this branch replaced (a byte count per
governed key, then the stdlib parser again whenever a governed name occurred twice anywhere),
kept here only to measure it against.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from pathlib import Path
from typing import Any

import orjson

from bench.guardrails import claude_code_request, cpu_us
from sluice.core.types import WireFormat
from sluice.http.sole_keys import sole_keys

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
_GOVERNED = [
    f'"{k}"'.encode()
    for k in ("model", "stream", "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "generationConfig")
]
_ESCAPED_LETTER = re.compile(rb"\\u00[4-7][0-9A-Fa-f]")


def previous(body: bytes) -> bool:
    """Whether the previous check re-encoded `body`."""
    if not any(body.count(k) > 1 for k in _GOVERNED) and _ESCAPED_LETTER.search(body) is None:
        return False
    top: list[list[tuple[str, Any]]] = []

    def keep_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        top[:] = [pairs]
        return dict(pairs)

    json.loads(body, object_pairs_hook=keep_pairs)
    keys = [k for k, _ in top[0]]
    return len(keys) != len(set(keys))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    recorded = (REPO / "tests/fixtures/claude_code/messages_request.json").read_bytes()
    small = b'{"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}'
    bodies = {"claude_code_220k": orjson.dumps(claude_code_request()), "claude_code_115k": recorded, "small": small}
    results: dict[str, Any] = {"python": platform.python_version(), "bodies": {}}
    for name, body in bodies.items():
        doc = orjson.loads(body)
        assert sole_keys(body, doc, WireFormat.ANTHROPIC_MESSAGES) is body and not previous(body)
        n = args.iterations if len(body) > 1000 else args.iterations * 100
        parse = cpu_us(lambda b=body: orjson.loads(b), n)  # type: ignore[misc]
        new = cpu_us(lambda b=body, d=doc: sole_keys(b, d, WireFormat.ANTHROPIC_MESSAGES), n)  # type: ignore[misc]
        old = cpu_us(lambda b=body: previous(b), n)  # type: ignore[misc]
        row = {"bytes": len(body), "orjson_loads_us": parse, "sole_keys_us": new, "previous_us": old}
        row |= {"sole_keys_x_parse": new / parse, "previous_x_parse": old / parse}
        results["bodies"][name] = row
        print(
            f"{name:18} {len(body):7} B  orjson.loads {parse:7.1f} µs  sole_keys {new:7.1f} µs ({new / parse:.2f}×)"
            f"  previous {old:7.1f} µs ({old / parse:.2f}×)"
        )
    (RESULTS / "sole_keys.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
