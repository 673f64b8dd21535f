"""Gauges read from the running services when Prometheus scrapes: budgets, circuit breakers, the
audit chain, the request log queue. Nothing is updated per request for these."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sluice.app import Services
from sluice.governance.utilisation import BudgetState, budget_states

log = logging.getLogger("sluice.metrics")
PICO_PER_DOLLAR = 10**12
BREAKER_STATES = ("closed", "half_open", "open")


class ServicesCollector(Collector):
    """`refresh()` (async, before each exposition) reads the services; `collect()` shows what it read."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._budgets: list[BudgetState] = []
        self._breakers: dict[str, str] = {}
        self._chain_head = 0
        self._queue_depth = 0
        self._writes = (0, 0)

    async def refresh(self) -> None:
        services = self.services
        try:
            self._budgets = await budget_states(services.limits)
        except Exception:  # the counters may be down: the other metrics still answer
            log.warning("budget utilisation could not be read for /metrics", exc_info=True)
            self._budgets = []
        self._breakers = services.engine.breakers.snapshot(time.monotonic())
        try:
            last = await services.store.last_audit()
        except Exception:  # the store may be down: keep the last head seen, answer the rest
            log.warning("the audit chain head could not be read for /metrics", exc_info=True)
        else:
            self._chain_head = last.seq if last is not None else 0
        # The recorder's queue is its own; its depth is read, never changed, here.
        self._queue_depth = services.recorder._queue.qsize()
        self._writes = services.store.write_counts()

    def collect(self) -> Iterator[Metric]:
        labels = ["budget", "scope", "scope_id"]
        spent = GaugeMetricFamily("sluice_budget_spent_dollars", "Settled spend in the budget's window.", labels=labels)
        held = GaugeMetricFamily(
            "sluice_budget_held_dollars", "Spend reserved by requests in flight in the budget's window.", labels=labels
        )
        limit = GaugeMetricFamily("sluice_budget_limit_dollars", "The budget's limit per window.", labels=labels)
        ratio = GaugeMetricFamily(
            "sluice_budget_utilisation_ratio", "Settled spend over the limit (1 = spent).", labels=labels
        )
        for state in self._budgets:
            key = [state.rule.id, state.rule.scope, state.rule.scope_id]
            spent.add_metric(key, state.spent_pico / PICO_PER_DOLLAR)
            held.add_metric(key, state.held_pico / PICO_PER_DOLLAR)
            limit.add_metric(key, state.rule.limit / PICO_PER_DOLLAR)
            ratio.add_metric(key, state.fraction)
        yield from (spent, held, limit, ratio)
        breaker = GaugeMetricFamily(
            "sluice_circuit_breaker_state",
            "Per provider key (provider/key): 1 for its current state (closed, half_open, open). "
            "A key never failed since its last success has no series.",
            labels=["breaker", "state"],
        )
        for name, current in sorted(self._breakers.items()):
            for state_name in BREAKER_STATES:
                breaker.add_metric([name, state_name], 1 if state_name == current else 0)
        yield breaker
        yield GaugeMetricFamily("sluice_audit_chain_head", "Sequence number of the audit log's last record.",
                                value=self._chain_head)  # fmt: skip
        yield GaugeMetricFamily(
            "sluice_request_log_queue_depth", "Request log records waiting for the writer.", value=self._queue_depth
        )
        yield CounterMetricFamily(
            "sluice_store_commits",
            "Transactions committed for the request log, spend ledger and audit log (rows / commits: their batching).",
            value=self._writes[0],
        )
        yield CounterMetricFamily(
            "sluice_store_rows", "Rows committed to the request log, spend ledger and audit log.", value=self._writes[1]
        )
