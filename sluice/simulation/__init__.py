"""Policy simulation: what a proposed configuration would have done to the recorded traffic.

`simulate` replays the request log from a time on through the live path's own policy objects
built from the proposal (`sluice.simulation.policy`), one request at a time on a simulated
clock (`sluice.simulation.replay`), and reports per developer and team what would have been
refused, rerouted or degraded and what it would have cost (`sluice.simulation.report`). It only
reads the store. See docs/policy-simulation.md.
"""

from __future__ import annotations

from datetime import datetime

from sluice.settings import SluiceConfig
from sluice.simulation.policy import build_policy, parse_proposal
from sluice.simulation.replay import Replay
from sluice.simulation.report import Report
from sluice.storage.ports import Store

__all__ = ["Report", "parse_proposal", "simulate"]


async def simulate(
    proposal: SluiceConfig,
    store: Store,
    since: datetime,
    until: datetime | None = None,
    *,
    sample: int | None = 20,
    batch: int = 10_000,
) -> Report:
    """The report of replaying `store`'s request log in [since, until) under `proposal`.
    `sample`: request ids kept per outcome (None: all of them)."""
    policy = await build_policy(proposal, store, since)
    report = Report(since, until, sample=sample)
    try:
        return await Replay(policy, report).run(store.logged_requests(since, until, batch))
    finally:
        await policy.limits.stop()  # commits the settlements queued for the view; closes the counters
