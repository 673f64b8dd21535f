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
        # Build only what some rule reads: turning Python values into CEL values is the costly part.
        compiled = [rule for rules in self._rules.values() for rule in rules]
        self._variables = frozenset(v for rule in compiled for v in rule.program.variables())
        self._with_headers = any("headers" in rule.program.source for rule in compiled)
        # A resolution is a function of the facts alone unless a rule reads the budget state or
        # picks among weighted targets (see `memo_key`).
        self._pure = not any(rule.needs_usage or len(rule.targets) > 1 for rule in compiled)
        self._by_model: dict[tuple[Scope, str], tuple[CompiledRule, ...]] = {}
        self._contexts: dict[tuple[Any, ...], Any] = {}

    def _candidates(self, scope: Scope, model: str) -> tuple[CompiledRule, ...]:
        """The scope's rules that may apply to `model`, in their order (cached per model)."""
        found = self._by_model.get((scope, model))
        if found is None:
            if len(self._by_model) > 10_000:  # requests may name anything: keep the cache bounded
                self._by_model.clear()
            found = tuple(r for r in self._rules.get(scope, ()) if not r.models or model in r.models)
            self._by_model[scope, model] = found
        return found

    def memo_key(self, facts: RouteFacts) -> tuple[Any, ...] | None:
        """The facts `resolve` reads, when its resolution depends on nothing else: equal keys give
        equal resolutions, so a caller replaying many requests may resolve each key once. None
        when a rule reads the budget state or chooses among weighted targets."""
        if not self._pure:
            return None
        needed = self._variables
        reads_request = "request" in needed
        return (
            facts.model,
            facts.key_id,
            facts.team_id,
            facts.customer_id,
            facts.key_name if "key" in needed else None,
            (facts.client, facts.session_id, facts.stream) if reads_request else None,
            tuple(facts.headers.items()) if self._with_headers else None,
            int(facts.now.timestamp()) if "time" in needed else None,
        )

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
                for rule in self._candidates(scope, current):
                    if rule.id in fired:
                        continue
                    if rule.needs_usage and governance is None:
                        budget_used, tokens_used = await usage()
                        governance = {"budget_used": budget_used, "tokens_used": tokens_used}
                        context = None  # rebuild with the governance figures
                    if context is None:
                        context = self._context(facts, current, governance or {})
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

    def _context(self, facts: RouteFacts, model: str, governance: dict[str, Any]) -> Any:
        """The CEL context for one step. Contexts are cached by the values they hold, because
        converting Python values into CEL values costs far more than evaluating a rule, and an
        agent's requests repeat the same values."""
        needed = self._variables
        now = facts.now
        cache_key = (
            model,
            facts.model,
            facts.client,
            facts.session_id,
            facts.stream,
            facts.key_id,
            facts.key_name,
            facts.team_id,
            facts.customer_id,
            tuple(facts.headers.items()) if self._with_headers else None,
            int(now.timestamp()) if "time" in needed else None,
        )
        context = self._contexts.get(cache_key)
        if context is None:
            context = cel.Context()
            if "request" in needed:
                request: dict[str, Any] = {
                    "model": model,
                    "requested_model": facts.model,
                    "client": facts.client,
                    "session": facts.session_id or "",
                    "stream": facts.stream,
                }
                if self._with_headers:
                    request["headers"] = dict(facts.headers)
                context.add_variable("request", request)
            if "key" in needed:
                context.add_variable(
                    "key",
                    {
                        "id": facts.key_id,
                        "name": facts.key_name,
                        "team": facts.team_id or "",
                        "customer": facts.customer_id or "",
                    },
                )
            if "time" in needed:
                context.add_variable(
                    "time",
                    {"hour": now.hour, "minute": now.minute, "weekday": now.isoweekday(), "unix": int(now.timestamp())},
                )
            if len(self._contexts) > 10_000:
                self._contexts.clear()
            self._contexts[cache_key] = context
        # Governance figures change with every request: set them on the (possibly shared) context
        # right before this step's rules run, with no await in between.
        for name in _GOVERNANCE_VARIABLES & needed:
            context.add_variable(name, governance.get(name, 0))
        return context


def _holds(rule: CompiledRule, context: Any) -> bool:
    try:
        return rule.program.execute(context) is True
    except Exception as exc:  # a missing header, a type mismatch: the rule simply does not apply
        log.debug("routing rule %s did not evaluate: %s", rule.id, exc)
        return False
