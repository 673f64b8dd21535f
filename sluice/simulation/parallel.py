"""A replay split over processes, exactly: by groups of keys that share no counter.

Every counter `Limits` keeps belongs to a key, its team or its customer (budgets, rate limits,
access profiles' per-key limits, a session cap's per-session dollars and start), and a team
belongs to one customer. So the keys of one customer (else of one team, else one key alone)
are decided by counters no other key touches, and replaying each such group in its own process,
in timestamp order, decides every request as one replay of the whole log would. Each process
builds the same proposal over the same store, reads only its keys' rows (`logged_requests(keys=)`;
the last process takes every other row, unknown and absent keys too), and the reports are added
up, examples kept in the order one replay would have met them. `tests/unit/test_simulation.py`
checks the report is the same as one process's.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime

from sluice.settings import SluiceConfig
from sluice.simulation.policy import Policy, build_policy
from sluice.simulation.replay import Replay
from sluice.simulation.report import Report


def partition(policy: Policy, parts: int) -> list[frozenset[str]]:
    """The proposal's keys in `parts` groups that share no counter, about equal in keys."""
    groups: dict[str, list[str]] = {}
    for key in policy.keys.values():
        team, customer = policy.limits.scopes_of(key)
        owner = f"customer:{customer}" if customer else f"team:{team}" if team else f"key:{key.id}"
        groups.setdefault(owner, []).append(key.id)
    out: list[list[str]] = [[] for _ in range(parts)]
    for _, ids in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        min(out, key=len).extend(ids)  # largest groups first, each to the smallest part
    return [frozenset(ids) for ids in out]


async def _replay_part(
    proposal: SluiceConfig, store_url: str, since: datetime, until: datetime | None, part: int, parts: int,
    sample: int | None, batch: int,
) -> Report:  # fmt: skip
    from sluice.app import open_store

    store = open_store(store_url)
    try:
        policy = await build_policy(proposal, store, since)
        try:
            groups = partition(policy, parts)
            last = part == parts - 1
            # The last part: every row no other part takes (its own keys', unknown keys', none).
            keys = frozenset().union(*groups[:-1]) if last else groups[part]
            report = Report(since, until, sample=sample)
            rows = store.logged_requests(since, until, batch, keys=keys, other_keys=last)
            return await Replay(policy, report, warn=part == 0).run(rows)
        finally:
            await policy.limits.stop()
    finally:
        await store.close()


def _run_part(*args: object) -> Report:
    return asyncio.run(_replay_part(*args))  # type: ignore[arg-type]


def simulate_parallel(
    proposal: SluiceConfig,
    store_url: str,
    since: datetime,
    until: datetime | None = None,
    *,
    processes: int = 2,
    sample: int | None = 20,
    batch: int = 10_000,
) -> Report:
    """`simulate` over the store at `store_url` in `processes` processes (started fresh, not
    forked from this one's threads and loop); the same report."""
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        futures = [
            pool.submit(_run_part, proposal, store_url, since, until, part, processes, sample, batch)
            for part in range(processes)
        ]
        reports = [future.result() for future in futures]
    merged = Report.merged(reports, sample)
    merged.seconds = time.perf_counter() - started
    return merged
