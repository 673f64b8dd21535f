"""Model resolution: routing rules (CEL) and aliases, narrowest scope first.

A request's model goes through at most `MAX_STEPS` rewrites. At each step the rules of the key,
then of its team, its customer and everyone are tried in order; the first whose `models` list
admits the current name and whose `when` holds yields the next name (a rule fires once per
request). When no rule fires, an alias of the current name (again narrowest scope first) does;
when neither does, the name is final. Rules and aliases may chain.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import cel

from sluice.routing.weighted import choose
from sluice.settings import RoutingConfig, RoutingRuleConfig

log = logging.getLogger("sluice.routing")
MAX_STEPS = 8
_GOVERNANCE_VARIABLES = frozenset({"budget_used", "tokens_used"})
Scope = tuple[str, str]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    program: Any  # cel.Program
    models: frozenset[str]
    targets: tuple[tuple[str, float], ...]
    fallbacks: tuple[str, ...]
    needs_usage: bool

    @classmethod
    def of(cls, cfg: RoutingRuleConfig) -> CompiledRule:
        program = cel.compile(cfg.when)
        targets = ((cfg.target, 1.0),) if cfg.target else tuple((t.model, t.weight) for t in cfg.targets)
        return cls(
            cfg.id,
            program,
            frozenset(cfg.models),
            targets,
            tuple(cfg.fallbacks),
            bool(set(program.variables()) & _GOVERNANCE_VARIABLES),
        )


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """What a rule can see of a request."""

    model: str
    headers: Mapping[str, str]
    key_id: str
    key_name: str
    team_id: str | None
    customer_id: str | None
    client: str
    session_id: str | None
    stream: bool
    now: datetime

    def scopes(self) -> list[Scope]:
        out: list[Scope] = [("virtual_key", self.key_id)]
        if self.team_id:
            out.append(("team", self.team_id))
        if self.customer_id:
            out.append(("customer", self.customer_id))
        out.append(("global", ""))
        return out


@dataclass(slots=True)
class Resolution:
    model: str
    steps: list[str] = field(default_factory=list)  # "rule:<id>" / "alias:<name>", in order
    fallbacks: list[str] = field(default_factory=list)

    def header(self) -> str:
        return ", ".join(self.steps)


Usage = Callable[[], Awaitable[tuple[float, int]]]


class Router:
    def __init__(self, routing: RoutingConfig) -> None:
        self._rules: dict[Scope, list[CompiledRule]] = {}
        for cfg in routing.rules:
            self._rules.setdefault(cfg.scope, []).append(CompiledRule.of(cfg))
        self._aliases: dict[tuple[Scope, str], str] = {(a.scope, a.alias): a.target for a in routing.aliases}
        self.has_rules = bool(self._rules) or bool(self._aliases)

    async def resolve(self, facts: RouteFacts, usage: Usage) -> Resolution:
        result = Resolution(facts.model)
        if not self.has_rules:
            return result
        scopes = facts.scopes()
        fired: set[str] = set()
        governance: dict[str, Any] | None = None
        for _ in range(MAX_STEPS):
            current = result.model
            context: Any = None
            step = None
            for scope in scopes:
                for rule in self._rules.get(scope, ()):
                    if rule.id in fired or (rule.models and current not in rule.models):
                        continue
                    if rule.needs_usage and governance is None:
                        budget_used, tokens_used = await usage()
                        governance = {"budget_used": budget_used, "tokens_used": tokens_used}
                        context = None  # rebuild with the governance figures
                    if context is None:
                        context = _context(facts, current, governance or {})
                    if _holds(rule, context):
                        fired.add(rule.id)
                        result.fallbacks.extend(rule.fallbacks)
                        step = (f"rule:{rule.id}", choose(rule.targets, lambda t: t[1])[0])
                        break
                if step:
                    break
            if step is None:
                target = next((self._aliases[s, current] for s in scopes if (s, current) in self._aliases), None)
                if target is None or target == current:
                    return result
                step = (f"alias:{current}", target)
            result.steps.append(step[0])
            result.model = step[1]
        log.warning("routing of %s stopped after %d steps at %s", facts.model, MAX_STEPS, result.model)
        return result


def _holds(rule: CompiledRule, context: Any) -> bool:
    try:
        return rule.program.execute(context) is True
    except Exception as exc:  # a missing header, a type mismatch: the rule simply does not apply
        log.debug("routing rule %s did not evaluate: %s", rule.id, exc)
        return False


def _context(facts: RouteFacts, model: str, governance: dict[str, Any]) -> Any:
    variables: dict[str, Any] = {
        "request": {
            "model": model,
            "requested_model": facts.model,
            "headers": dict(facts.headers),
            "client": facts.client,
            "session": facts.session_id or "",
            "stream": facts.stream,
        },
        "key": {
            "id": facts.key_id,
            "name": facts.key_name,
            "team": facts.team_id or "",
            "customer": facts.customer_id or "",
        },
        "time": {
            "hour": facts.now.hour,
            "minute": facts.now.minute,
            "weekday": facts.now.isoweekday(),
            "unix": int(facts.now.timestamp()),
        },
        "budget_used": governance.get("budget_used", 0.0),
        "tokens_used": governance.get("tokens_used", 0),
    }
    return cel.Context(variables=variables)
