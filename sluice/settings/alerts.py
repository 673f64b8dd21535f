"""The `alerts` section: warnings before a budget is spent, soft budgets, runaway spend, provider
health; delivered through the audit outbox to webhooks (Standard Webhooks), Slack, Microsoft
Teams and email."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from sluice.settings.base import _Strict


class AlertSinkConfig(_Strict):
    name: str = Field(min_length=1, max_length=100)
    type: Literal["webhook", "slack", "teams", "email"]
    url: str | None = None  # webhook, slack, teams: the endpoint (an incoming webhook URL)
    # webhook: the Standard Webhooks signing secret, `whsec_<base64>` (or any string, used as bytes)
    secret: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # email
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str | None = None
    to: list[str] = Field(default_factory=list)
    # Also mail the developer concerned (their primary email in the directory) when the alert is
    # about one virtual key (its budget, soft budget or spend rate) and the key belongs to a person.
    notify_developer: bool = False

    @model_validator(mode="after")
    def _complete(self) -> AlertSinkConfig:
        if self.type == "email":
            if not (self.smtp_host and self.sender and (self.to or self.notify_developer)):
                raise ValueError(f"alert sink {self.name!r} (email) needs smtp_host, sender and to")
        elif not self.url:
            raise ValueError(f"alert sink {self.name!r} ({self.type}) needs 'url'")
        if self.type == "webhook" and self.secret is None:
            raise ValueError(f"alert sink {self.name!r} (webhook) needs 'secret' (the signing secret)")
        return self


def _thresholds(values: list[float]) -> list[float]:
    if any(not 0 < v <= 1000 for v in values):
        raise ValueError("thresholds are percentages above 0 (100 = the limit)")
    return sorted(set(values))


class BudgetAlertConfig(_Strict):
    budget_id: str = Field(min_length=1)
    thresholds: list[float] = Field(default_factory=lambda: [50.0, 80.0, 100.0])

    _check = field_validator("thresholds")(classmethod(lambda cls, v: _thresholds(v)))


class SoftBudgetConfig(_Strict):
    """A budget that only warns: it never refuses a request."""

    id: str = Field(min_length=1)
    virtual_key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    max_limit: float = Field(gt=0)  # dollars per window
    reset_duration: str = "1M"  # calendar-aligned windows (UTC): 1h, 1d, 1w, 1M
    thresholds: list[float] = Field(default_factory=lambda: [50.0, 80.0, 100.0])

    _check = field_validator("thresholds")(classmethod(lambda cls, v: _thresholds(v)))

    @property
    def scope(self) -> tuple[str, str]:
        for kind in ("virtual_key", "team", "customer"):
            value = getattr(self, f"{kind}_id")
            if value:
                return kind, value
        raise ValueError("unreachable")

    @model_validator(mode="after")
    def _one_scope(self) -> SoftBudgetConfig:
        if sum(1 for v in (self.virtual_key_id, self.team_id, self.customer_id) if v) != 1:
            raise ValueError(f"soft budget {self.id!r} needs exactly one of virtual_key_id, team_id, customer_id")
        return self


class SpendRateConfig(_Strict):
    """Spending more than `max_dollars_per_hour` over the last hour (the runaway weekend agent).
    `virtual_key_id: "*"` watches every key (the top spenders of the last hour in the request log)."""

    id: str = Field(min_length=1)
    virtual_key_id: str | None = None
    team_id: str | None = None
    customer_id: str | None = None
    max_dollars_per_hour: float = Field(gt=0)

    @property
    def scope(self) -> tuple[str, str]:
        return SoftBudgetConfig.scope.fget(self)  # type: ignore[attr-defined,no-any-return]

    @model_validator(mode="after")
    def _one_scope(self) -> SpendRateConfig:
        if sum(1 for v in (self.virtual_key_id, self.team_id, self.customer_id) if v) != 1:
            raise ValueError(f"spend rate alert {self.id!r} needs exactly one of virtual_key_id, team_id, customer_id")
        if "*" in (self.team_id, self.customer_id):
            raise ValueError(f"spend rate alert {self.id!r}: '*' (every key) is for virtual_key_id only")
        return self


class AlertsConfig(_Strict):
    sinks: list[AlertSinkConfig] = Field(default_factory=list)
    # Thresholds for every enforced budget without its own entry under `budgets` ([] = none).
    default_thresholds: list[float] = Field(default_factory=list)
    budgets: list[BudgetAlertConfig] = Field(default_factory=list)
    soft_budgets: list[SoftBudgetConfig] = Field(default_factory=list)
    spend_rate: list[SpendRateConfig] = Field(default_factory=list)
    provider_health: bool = True  # a provider key's circuit breaker opened
    interval_s: float = Field(default=10.0, gt=0)  # how often budgets, rates and breakers are checked
    # A claim left pending this long (at least 6 checks) belongs to a process that died between
    # claiming an alert and recording it: another process raises the alert again.
    claim_lease_s: float = Field(default=60.0, gt=0)
    # Claims done with are kept this long (and in any case until their window ends: a budget
    # threshold's claim until its budget window does), then pruned.
    claim_retention_days: float = Field(default=7.0, gt=0)

    _check = field_validator("default_thresholds")(classmethod(lambda cls, v: _thresholds(v)))

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)
