"""Cost of model resolution (routing rules in CEL + aliases) per request, in-process.

    python -m bench.routing_rules [--rules 100] [--iterations 20000]

Scenarios, each with `--rules` rules:
- baseline: no rules at all (the engine skips routing);
- indexed: rules for 100 different aliases with a `models` pre-filter, the request's alias
  matching one rule whose condition reads the request and the key (the usual configuration);
- scan-all: every rule applies to every model and none matches, so all are evaluated (worst case);
- governance: the indexed case with a rule on budget_used (usage read from an in-memory stub).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sluice.routing.router import RouteFacts, Router
from sluice.settings import parse_config

HEADERS = {
    "user-agent": "claude-cli/2.1.332 (external, sdk-cli)",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    "x-app": "cli",
    "x-claude-code-session-id": "e3c8bc62-0243-42ca-93ad-95128a9cd021",
    "content-type": "application/json",
    "x-stainless-lang": "js",
    "x-stainless-os": "Linux",
    "x-stainless-arch": "x64",
    "x-env": "staging",
}


def scenario(name: str, rules: int) -> dict[str, Any]:
    if name == "baseline":
        return {}
    if name == "indexed":
        return {
            "rules": [
                {
                    "id": f"r{i}",
                    "models": [f"alias-{i}"],
                    "when": f'request.client.startsWith("claude") && key.team == "t{i}"',
                    "target": f"claude-model-{i}",
                }
                for i in range(rules)
            ]
        }
    if name == "scan-all":
        return {
            "rules": [
                {
                    "id": f"r{i}",
                    "when": f'request.headers["x-env"] == "env-{i}" && request.model == "alias-{i}"',
                    "target": f"claude-model-{i}",
                }
                for i in range(rules)
            ]
        }
    if name == "governance":
        spec = scenario("indexed", rules)
        spec["rules"][50]["when"] = "budget_used >= 0.8"
        return spec
    raise ValueError(name)


async def measure(spec: dict[str, Any], iterations: int) -> float:
    router = Router(parse_config({"routing": spec}).routing)
    facts = RouteFacts(
        "alias-50",
        HEADERS,
        "vk-1",
        "Dev",
        "t50",
        "c1",
        HEADERS["user-agent"],
        HEADERS["x-claude-code-session-id"],
        True,
        datetime.now(UTC),
    )

    async def usage() -> tuple[float, int]:
        return 0.85, 1000

    for _ in range(500):  # warm up
        await router.resolve(facts, usage)
    start = time.process_time()
    for _ in range(iterations):
        await router.resolve(facts, usage)
    return (time.process_time() - start) / iterations * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results = {}
    for name in ("baseline", "indexed", "scan-all", "governance"):
        runs = [asyncio.run(measure(scenario(name, args.rules), args.iterations)) for _ in range(3)]
        results[name] = round(sorted(runs)[1], 2)  # median of three
    added = {k: round(v - results["baseline"], 2) for k, v in results.items() if k != "baseline"}
    report = {
        "date": datetime.now(UTC).isoformat(),
        "python": platform.python_version(),
        "rules": args.rules,
        "cpu_us_per_resolution": results,
        "added_us_vs_baseline": added,
        "target_us": 20,
    }
    print(json.dumps(report, indent=2))
    args.out.mkdir(exist_ok=True)
    (args.out / "routing_rules.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
