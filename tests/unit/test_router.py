from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from sluice.routing.router import RouteFacts, Router
from sluice.settings import ConfigError, parse_config


def router(routing: dict[str, Any]) -> Router:
    return Router(parse_config({"routing": routing}).routing)


def facts(model: str, **kw: Any) -> RouteFacts:
    base: dict[str, Any] = {
        "model": model,
        "headers": {},
        "key_id": "vk-a",
        "key_name": "A",
        "team_id": "team-a",
        "customer_id": "cust-a",
        "client": "claude-cli/2.1",
        "session_id": "s1",
        "stream": True,
        "now": datetime(2026, 11, 30, 14, 0, tzinfo=UTC),
    }
    base.update(kw)
    return RouteFacts(**base)


async def no_usage() -> tuple[float, int]:
    raise AssertionError("usage is read only when a rule asks for it")


async def test_aliases_narrowest_scope_first() -> None:
    r = router(
        {
            "aliases": [
                {"alias": "sonnet-model", "target": "anthropic/claude-sonnet-4-6"},
                {"alias": "sonnet-model", "target": "bedrock/sonnet", "team_id": "team-a"},
                {"alias": "sonnet-model", "target": "vertex/sonnet", "virtual_key_id": "vk-b"},
            ]
        }
    )
    assert (await r.resolve(facts("sonnet-model"), no_usage)).model == "bedrock/sonnet"
    assert (await r.resolve(facts("sonnet-model", team_id="other"), no_usage)).model == "anthropic/claude-sonnet-4-6"
    assert (await r.resolve(facts("sonnet-model", key_id="vk-b"), no_usage)).model == "vertex/sonnet"
    untouched = await r.resolve(facts("claude-haiku-4-5"), no_usage)
    assert untouched.model == "claude-haiku-4-5" and untouched.steps == []


async def test_degrade_at_80_percent_of_budget_then_alias_chain() -> None:
    r = router(
        {
            "aliases": [
                {"alias": "sonnet-model", "target": "claude-sonnet-4-6"},
                {"alias": "haiku-model", "target": "claude-haiku-4-5"},
            ],
            "rules": [
                {"id": "degrade", "models": ["sonnet-model"], "when": "budget_used >= 0.8", "target": "haiku-model"}
            ],
        }
    )

    async def at(fraction: float) -> Any:
        async def usage() -> tuple[float, int]:
            return fraction, 0

        return await r.resolve(facts("sonnet-model"), usage)

    low = await at(0.79)
    assert low.model == "claude-sonnet-4-6" and low.steps == ["alias:sonnet-model"]
    high = await at(0.8)
    assert high.model == "claude-haiku-4-5" and high.steps == ["rule:degrade", "alias:haiku-model"]
    assert high.header() == "rule:degrade, alias:haiku-model"


async def test_first_match_wins_and_key_scope_beats_global() -> None:
    r = router(
        {
            "rules": [
                {
                    "id": "global-1",
                    "models": ["m"],
                    "when": 'request.headers["x-env"] == "prod"',
                    "target": "global-prod",
                },
                {"id": "global-2", "models": ["m"], "when": "true", "target": "global-any"},
                {
                    "id": "mine",
                    "virtual_key_id": "vk-a",
                    "when": 'request.client.startsWith("claude-cli")',
                    "models": ["m"],
                    "target": "key-target",
                },
            ]
        }
    )
    assert (await r.resolve(facts("m", headers={"x-env": "prod"}), no_usage)).model == "key-target"
    other = facts("m", key_id="vk-z", headers={"x-env": "prod"})
    assert (await r.resolve(other, no_usage)).model == "global-prod"
    # A rule whose expression fails (missing header) does not match; the next one does.
    assert (await r.resolve(facts("m", key_id="vk-z"), no_usage)).model == "global-any"


async def test_rules_see_time_key_and_session() -> None:
    r = router(
        {
            "rules": [
                {
                    "id": "office-hours",
                    "models": ["m"],
                    "when": "time.hour >= 9 && time.hour < 18 && time.weekday <= 5",
                    "target": "day",
                },
                {"id": "night", "models": ["m"], "when": "true", "target": "night"},
            ]
        }
    )
    monday_noon = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert (await r.resolve(facts("m", now=monday_noon), no_usage)).model == "day"
    sunday = datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert (await r.resolve(facts("m", now=sunday), no_usage)).model == "night"


async def test_weighted_targets_and_fallbacks() -> None:
    r = router(
        {
            "rules": [
                {
                    "id": "split",
                    "when": "true",
                    "fallbacks": ["fb-1", "fb-2"],
                    "targets": [{"model": "a", "weight": 3}, {"model": "b", "weight": 1}],
                }
            ]
        }
    )
    picks = Counter([(await r.resolve(facts("m"), no_usage)).model for _ in range(4000)])
    assert abs(picks["a"] / 4000 - 0.75) < 0.04
    assert (await r.resolve(facts("m"), no_usage)).fallbacks == ["fb-1", "fb-2"]


async def test_rules_chain_until_none_applies() -> None:
    r = router(
        {
            "rules": [
                {"id": "one", "models": ["a"], "when": "true", "target": "b"},
                {"id": "two", "models": ["b"], "when": 'request.requested_model == "a"', "target": "c"},
            ]
        }
    )
    result = await r.resolve(facts("a"), no_usage)
    assert result.model == "c" and result.steps == ["rule:one", "rule:two"]


async def test_cycles_stop() -> None:
    r = router({"aliases": [{"alias": "a", "target": "b"}, {"alias": "b", "target": "a"}]})
    result = await r.resolve(facts("a"), no_usage)
    assert len(result.steps) == 8


@pytest.mark.parametrize(
    ("when", "words"),
    [
        ("budget_used >= ", "1:16"),
        ("budgte_used > 0.5", "unknown variable(s) budgte_used"),
        ('request.model == "x" &&', "Syntax error"),
    ],
)
def test_bad_rules_are_rejected_at_load_with_the_position(when: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"routing": {"rules": [{"id": "bad", "when": when, "target": "x"}]}})
    assert "routing.rules.0.when" in str(err.value) and words in str(err.value)


def test_rule_needs_exactly_one_kind_of_target() -> None:
    with pytest.raises(ConfigError, match="needs either 'target' or 'targets'"):
        parse_config({"routing": {"rules": [{"id": "r", "when": "true"}]}})
