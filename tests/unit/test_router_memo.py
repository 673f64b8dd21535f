"""Router.memo_key: equal keys only where the resolution cannot differ."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.routing.router import RouteFacts, Router
from sluice.settings import RoutingConfig


def router(*rules: dict[str, Any]) -> Router:
    return Router(RoutingConfig.model_validate({"rules": list(rules)}))


def facts(**kw: Any) -> RouteFacts:
    base: dict[str, Any] = {
        "model": "m",
        "headers": {},
        "key_id": "vk",
        "key_name": "n",
        "team_id": "t",
        "customer_id": None,
        "client": "claude-cli",
        "session_id": "s1",
        "stream": True,
        "now": datetime(2026, 11, 2, 10, tzinfo=UTC),
    }
    base.update(kw)
    return RouteFacts(**base)


async def no_usage() -> tuple[float, int]:
    raise AssertionError("not read")


async def test_equal_keys_resolve_alike_and_what_a_rule_reads_is_in_the_key() -> None:
    r = router({"id": "cli", "when": 'request.client.startsWith("claude")', "target": "cheap"})
    assert r.memo_key(facts()) == r.memo_key(facts(now=datetime(2027, 1, 1, tzinfo=UTC)))  # time is not read
    assert r.memo_key(facts()) != r.memo_key(facts(client="codex"))
    assert (await r.resolve(facts(), no_usage)).model == "cheap"
    assert (await r.resolve(facts(client="codex"), no_usage)).model == "m"
    timed = router({"id": "night", "when": "time.hour < 6", "target": "cheap"})
    assert timed.memo_key(facts()) != timed.memo_key(facts(now=facts().now + timedelta(hours=1)))


def test_no_key_where_the_budget_state_or_a_weighted_choice_decides() -> None:
    assert router({"id": "b", "when": "budget_used > 0.8", "target": "cheap"}).memo_key(facts()) is None
    split = {"id": "w", "when": "true", "targets": [{"model": "a", "weight": 1}, {"model": "b", "weight": 1}]}
    assert router(split).memo_key(facts()) is None
