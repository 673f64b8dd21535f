"""What every section of the config file shares: strict models and the checks several use."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)


class ConfigError(ValueError):
    """The config file cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        from sluice.core.windows import Duration

        Duration.parse(value)
    return value
