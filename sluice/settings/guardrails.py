"""The `guardrails:` section: rule sets, and which keys, teams and access profiles use which.

```yaml
guardrails:
  placeholder_key: env.SLUICE_GUARDRAIL_KEY   # shared by replicas: the same secret, the same placeholder
  default: standard                            # the set for keys nothing else names ("" for none)
  sets:
    standard: {builtin: true}                  # secrets redact, personal data and injection audit
    strict:
      builtin: true
      rules:
        - {name: no-acme, detector: deny, terms: ["Acme Corp"], action: block}
        - {name: no-pii-to-us, detector: pii, action: block, providers: [openai]}
  keys: {vk_123: strict}        # by virtual key id (wins)
  access_profiles: {contractors: strict}
  teams: {payments: strict}
```
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from sluice.core.linear_regex import LinearPattern
from sluice.settings.base import ConfigError, _Strict

ACTIONS = ("audit", "redact", "block", "alert")
WHERES = ("request", "tool_result", "answer", "mcp")
DETECTORS = ("secrets", "pii", "injection", "deny", "regex")


class GuardrailRuleConfig(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    detector: str
    action: str = "audit"
    where: list[str] = Field(default_factory=lambda: list(WHERES))
    kinds: list[str] = Field(default_factory=list)  # e.g. [email, card_number] of `pii`
    providers: list[str] = Field(default_factory=list)  # only for requests to these providers
    terms: list[str] = Field(default_factory=list)  # detector: deny
    patterns: list[str] = Field(default_factory=list)  # detector: regex

    @model_validator(mode="after")
    def _check(self) -> GuardrailRuleConfig:
        if self.detector not in DETECTORS:
            raise ConfigError(f"guardrail rule {self.name}: detector must be one of {', '.join(DETECTORS)}")
        if self.action not in ACTIONS:
            raise ConfigError(f"guardrail rule {self.name}: action must be one of {', '.join(ACTIONS)}")
        bad = set(self.where) - set(WHERES)
        if bad or not self.where:
            raise ConfigError(f"guardrail rule {self.name}: where must be among {', '.join(WHERES)}")
        if self.detector == "deny" and not any(t.strip() for t in self.terms):
            raise ConfigError(f"guardrail rule {self.name}: a deny rule needs terms")
        if self.detector == "regex":
            if not self.patterns:
                raise ConfigError(f"guardrail rule {self.name}: a regex rule needs patterns")
            for p in self.patterns:
                try:
                    LinearPattern(p)
                except ValueError as exc:
                    raise ConfigError(f"guardrail rule {self.name}: bad pattern {p!r}: {exc}") from None
            try:  # what the rule runs: one alternation, which RE2 may find too large where each part is not
                LinearPattern.any_of(self.patterns)
            except ValueError as exc:
                raise ConfigError(f"guardrail rule {self.name}: its patterns together: {exc}") from None
        if self.providers and self.action == "redact":
            # The body is redacted once, before a provider is chosen; per provider it can only be refused.
            raise ConfigError(f"guardrail rule {self.name}: a rule for some providers can audit, alert or block")
        return self


class GuardrailSetConfig(_Strict):
    builtin: bool = True  # start from the default rules (secrets, personal data, injection)
    rules: list[GuardrailRuleConfig] = Field(default_factory=list)  # added; one named like a builtin replaces it
    # Put redacted values back into answers. Off: the agent sees placeholders too (nothing the model
    # writes, a tool call an injection asked for included, can carry a real value out).
    restore: bool = True


class GuardrailsConfig(_Strict):
    enabled: bool = True
    placeholder_key: str | None = None  # keys placeholders and audit hashes; random per process if unset
    default: str = "standard"
    sets: dict[str, GuardrailSetConfig] = Field(default_factory=lambda: {"standard": GuardrailSetConfig()})
    keys: dict[str, str] = Field(default_factory=dict)
    access_profiles: dict[str, str] = Field(default_factory=dict)
    teams: dict[str, str] = Field(default_factory=dict)

    @field_validator("sets")
    @classmethod
    def _unique(cls, sets: dict[str, GuardrailSetConfig]) -> dict[str, GuardrailSetConfig]:
        for name, s in sets.items():
            names = [r.name for r in s.rules]
            if len(names) != len(set(names)):
                raise ConfigError(f"guardrail set {name}: two rules share a name")
        return sets

    @model_validator(mode="after")
    def _known(self) -> GuardrailsConfig:
        named = [self.default] if self.default else []
        named += [*self.keys.values(), *self.access_profiles.values(), *self.teams.values()]
        missing = sorted({n for n in named if n not in self.sets})
        if missing:
            raise ConfigError(f"guardrails: unknown set(s) {', '.join(missing)}")
        return self
