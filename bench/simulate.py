"""Policy simulation over a large request log: rows/s and total seconds, reading included.

    python -m bench.simulate [--rows 1000000] [--keys 400] [--db PATH] [--out bench/results/simulate.json]

Generates `--rows` request log entries over seven days into a SQLite store (through the store's
own writer), the way a gateway would have logged them: `--keys` virtual keys in 40 teams, each
key's traffic in agent sessions of a few dozen requests on one or two models, Claude and GPT
models at their real prices, a few refused and failed requests, streaming and not. A `--db` that
exists already is reused (generation is not what is measured).

Then it measures, in the same run:
- baseline: reading the whole window through `logged_requests` and touching every row (what
  any replay must pay);
- simulate: `sluice.simulation.simulate` of a proposal with every kind of policy: allowlists
  (one team loses Opus), halved team budgets, daily key budgets, per-key request and token rate
  limits, routing rules in CEL (a team's Opus requests to Sonnet; a rule on the client) and an
  alias;
and reports rows/s, seconds (wall clock and this process's CPU time, which a machine shared with
other work does not inflate), and the ratio of the simulation to the reading alone.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sluice
from sluice.core.types import Usage
from sluice.pricing.table import PriceTable
from sluice.settings import SluiceConfig, parse_config
from sluice.simulation import simulate
from sluice.simulation.parallel import simulate_parallel
from sluice.storage.backends.sql import SqlStore
from sluice.storage.records import RequestLogEntry

MODELS = [
    ("anthropic", "claude-sonnet-4-5-20250929", 6),
    ("anthropic", "claude-haiku-4-5-20251001", 3),
    ("anthropic", "claude-opus-4-1-20250805", 1),
    ("openai", "gpt-4o-mini", 2),
    ("openai", "gpt-4.1", 1),
]
CLIENTS = ["claude-cli/2.1.3 (external, cli)", "codex_cli_rs/0.46.0", "GeminiCLI/0.9.0", "python-httpx/0.28"]
TEAMS = 40
DAYS = 7


def key_team(i: int) -> str:
    return f"team-{i % TEAMS}"


def generate_rows(rows: int, keys: int, end: datetime, seed: int = 7) -> list[list[RequestLogEntry]]:
    rng = random.Random(seed)
    prices = PriceTable.bundled()
    start = end - timedelta(days=DAYS)
    span = (end - start).total_seconds()
    weights = [w for _, _, w in MODELS]
    out: list[RequestLogEntry] = []
    n = 0
    session = 0
    while n < rows:
        k = rng.randrange(keys)
        session += 1
        provider, model, _ = rng.choices(MODELS, weights)[0]
        client = CLIENTS[k % len(CLIENTS)]
        at = start + timedelta(seconds=rng.random() * span * 0.98)
        for _ in range(min(rows - n, rng.randint(5, 60))):
            at += timedelta(seconds=rng.expovariate(1 / 20))
            if at >= end:
                break
            usage = Usage(rng.randint(2_000, 60_000), rng.randint(50, 4_000), rng.randint(0, 40_000), 0)
            decision, status, kind = "allow", 200, None
            roll = rng.random()
            if roll < 0.01:
                decision, status, kind = "deny", 402, "policy_budget_exceeded"
                usage = Usage()
            elif roll < 0.02:
                decision, status, kind = "error", 529, "provider_overloaded"
                usage = Usage()
            cost = prices.cost_pico(model, usage, provider)
            out.append(
                RequestLogEntry(
                    request_id=f"req-{n:08d}",
                    ts=at,
                    path="/v1/messages" if provider == "anthropic" else "/v1/chat/completions",
                    surface="anthropic_messages" if provider == "anthropic" else "openai_chat",
                    status=status,
                    decision=decision,
                    error_kind=kind,
                    virtual_key_id=f"vk-{k}",
                    virtual_key_name=f"dev {k}",
                    team_id=key_team(k),
                    client=client,
                    session_id=f"s-{session}",
                    user_id=f"user-{k}",
                    provider=provider if decision != "deny" else None,
                    requested_model=model,
                    model=model if decision != "deny" else None,
                    stream=rng.random() < 0.8,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cache_read_tokens=usage.cache_read_tokens,
                    cost_pico=cost,
                    attempts=[{"model": model, "provider": provider, "outcome": "ok"}],
                )
            )
            n += 1
    out.sort(key=lambda e: e.ts)
    return [out[i : i + 10_000] for i in range(0, len(out), 10_000)]


def proposal(keys: int) -> SluiceConfig:
    return parse_config(proposal_doc(keys))


def proposal_doc(keys: int) -> dict[str, Any]:
    """The proposal as a config file's document (`python -m bench.simulate --write-proposal F`)."""
    every = [{"provider": "anthropic"}, {"provider": "openai"}]
    no_opus = [
        {"provider": "anthropic", "allowed_models": ["claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"]},
        {"provider": "openai"},
    ]
    doc: dict[str, Any] = {
        "providers": {
            "anthropic": {"keys": [{"name": "a", "value": "x"}]},
            "openai": {"keys": [{"name": "o", "value": "x"}]},
        },
        "teams": [{"id": f"team-{t}"} for t in range(TEAMS)],
        "virtual_keys": [
            {
                "id": f"vk-{k}",
                "name": f"dev {k}",
                "team_id": key_team(k),
                "provider_configs": no_opus if k % TEAMS == 3 else every,
            }
            for k in range(keys)
        ],
        "budgets": [
            # about what a team spends in a week, some teams a little under it
            {"id": f"team-{t}-weekly", "team_id": f"team-{t}", "max_limit": 9_000 + 300 * t, "reset_duration": "1w"}
            for t in range(TEAMS)
        ]
        + [
            {"id": f"vk-{k}-daily", "virtual_key_id": f"vk-{k}", "max_limit": 60, "reset_duration": "1d"}
            for k in range(0, keys, 3)
        ],
        "rate_limits": [
            {
                "id": f"vk-{k}-rate",
                "virtual_key_id": f"vk-{k}",
                "request_max_limit": 120,
                "request_reset_duration": "1h",
                "token_max_limit": 3_000_000,
                "token_reset_duration": "1h",
            }
            for k in range(0, keys, 2)
        ],
        "routing": {
            "rules": [
                {
                    "id": "team-7-opus-to-sonnet",
                    "models": ["claude-opus-4-1-20250805"],
                    "when": 'key.team == "team-7"',
                    "target": "claude-sonnet-4-5-20250929",
                },
                {
                    "id": "scripts-to-mini",
                    "models": ["gpt-4.1"],
                    "when": 'request.client.startsWith("python")',
                    "target": "gpt-4o-mini",
                },
            ],
            "aliases": [
                {"alias": "claude-haiku-4-5-20251001", "target": "claude-haiku-4-5-20251001", "team_id": "team-9"}
            ],
        },
    }
    return doc


async def fill(db: Path, rows: int, keys: int, end: datetime) -> None:
    store = SqlStore(f"sqlite:///{db}")
    await store.migrate()
    for batch in generate_rows(rows, keys, end):
        await store.insert_requests(batch)
    await store.close()


async def measure(db: Path, keys: int, since: datetime, *, split: bool = True) -> dict[str, Any]:
    store = SqlStore(f"sqlite:///{db}")
    try:
        started, cpu = time.perf_counter(), time.process_time()
        count, tokens = 0, 0
        async for batch in store.logged_requests(since):
            for row in batch:
                count += 1
                tokens += row.input_tokens
        read_s, read_cpu = time.perf_counter() - started, time.process_time() - cpu
        config = proposal(keys)
        started, cpu = time.perf_counter(), time.process_time()
        report = await simulate(config, store, since)
        total_s, total_cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await store.close()
    t = report.total
    found = {
        "report_sha256": hashlib.sha256(
            json.dumps({**report.as_dict(), "seconds": 0}, sort_keys=True, default=str).encode()
        ).hexdigest(),
        "rows": count,
        "replayed": t.requests,
        "baseline_read_s": round(read_s, 2),
        "simulate_s": round(total_s, 2),
        "rows_per_s": round(count / total_s),
        "ratio_to_read": round(total_s / read_s, 2),
        # CPU seconds of this process (both threads): what a loaded machine does not inflate
        "baseline_read_cpu_s": round(read_cpu, 2),
        "simulate_cpu_s": round(total_cpu, 2),
        "rows_per_cpu_s": round(count / total_cpu),
        "outcomes": {"unchanged": t.unchanged, "rerouted": t.rerouted, "degraded": t.degraded, "refused": t.refused,
                     "allowed": t.allowed},
        "refused_by_rules": len(t.refused_by),
        "skipped": report.skipped,
    }  # fmt: skip
    if split:  # the same replay split over 2 processes (the report must be the same); their CPU too
        started, children = time.perf_counter(), _children_cpu()
        parts = await asyncio.to_thread(simulate_parallel, config, f"sqlite+aiosqlite:///{db}", since, processes=2)
        found["two_processes_s"] = round(time.perf_counter() - started, 2)
        found["two_processes_cpu_s"] = round(_children_cpu() - children, 2)
        found["two_processes_same_report"] = {**parts.as_dict(), "seconds": 0} == {**report.as_dict(), "seconds": 0}
    return found


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=400)
    parser.add_argument("--db", type=Path, default=None, help="reuse (or create) this SQLite file")
    parser.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    parser.add_argument("--no-split", action="store_true", help="leave out the 2-process run")
    parser.add_argument("--write-proposal", type=Path, default=None, help="write the proposal (JSON) and stop")
    args = parser.parse_args()
    if args.write_proposal:
        args.write_proposal.write_text(json.dumps(proposal_doc(args.keys), indent=1))
        return
    end = datetime(2026, 11, 30, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or Path(tmp) / "log.db"
        generated_s = 0.0
        if not db.exists():
            started = time.perf_counter()
            asyncio.run(fill(db, args.rows, args.keys, end))
            generated_s = time.perf_counter() - started
        result = asyncio.run(measure(db, args.keys, end - timedelta(days=DAYS), split=not args.no_split))
    result.update(
        # other work on the machine inflates wall time (and, less, CPU time): say how much there was
        load_average_1m_after=round(os.getloadavg()[0], 1),
        generated_s=round(generated_s, 1),
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        code=str(Path(sluice.__file__).parent),
    )
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
