"""The `routing` section: aliases, rules in CEL, retries and circuit breakers."""

from __future__ import annotations

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from sluice.settings.base import _Strict

RULE_VARIABLES = frozenset({"request", "key", "time", "budget_used", "tokens_used"})


class _MaybeScoped(_Strict):
    """Attached to at most one of a virtual key, a team or a customer; none means everyone."""

    virtual_key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None

    @model_validator(mode="after")
    def _at_most_one_scope(self) -> _MaybeScoped:
        if sum(x is not None for x in (self.virtual_key_id, self.team_id, self.customer_id)) > 1:
            raise ValueError("give at most one of virtual_key_id, team_id, customer_id")
        return self

    @property
    def scope(self) -> tuple[str, str]:
        for kind, value in (
            ("virtual_key", self.virtual_key_id),
            ("team", self.team_id),
            ("customer", self.customer_id),
        ):
            if value is not None:
                return kind, value
        return "global", ""


class AliasConfig(_MaybeScoped):
    alias: str = Field(min_length=1)
    target: str = Field(min_length=1)


class RouteTarget(_Strict):
    model: str = Field(min_length=1)
    weight: float = Field(default=1.0, ge=0)


class RoutingRuleConfig(_MaybeScoped):
    id: str = Field(min_length=1)
    when: str = "true"  # a CEL expression
    models: list[str] = Field(default_factory=list)  # only for these requested models (fast pre-filter)
    target: str | None = None
    targets: list[RouteTarget] = Field(default_factory=list)
    fallbacks: list[str] = Field(default_factory=list)

    @field_validator("when")
    @classmethod
    def _compiles(cls, expr: str) -> str:
        import cel

        try:
            program = cel.compile(expr)
        except ValueError as exc:
            raise ValueError(f"invalid CEL expression: {exc}") from None
        unknown = set(program.variables()) - RULE_VARIABLES
        if unknown:
            raise ValueError(
                f"unknown variable(s) {', '.join(sorted(unknown))} in {expr!r}; "
                f"rules may use {', '.join(sorted(RULE_VARIABLES))}"
            )
        return expr

    @model_validator(mode="after")
    def _one_kind_of_target(self) -> RoutingRuleConfig:
        if (self.target is None) == (not self.targets):
            raise ValueError(f"routing rule {self.id!r} needs either 'target' or 'targets'")
        return self


class RetryConfig(_Strict):
    attempts: int = Field(default=2, ge=1, le=10)  # tries per target, the first included
    backoff_base_s: float = Field(default=0.2, ge=0)
    backoff_max_s: float = Field(default=5.0, ge=0)


class CircuitBreakerConfig(_Strict):
    failure_threshold: int = Field(default=5, ge=1)
    open_seconds: float = Field(default=30.0, gt=0)


class RoutingConfig(_Strict):
    aliases: list[AliasConfig] = Field(default_factory=list)
    rules: list[RoutingRuleConfig] = Field(default_factory=list)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)
