"""The `retention` section: how long captured content and request-log metadata are kept (audit
records have their own period, `audit.retention_days`)."""

from __future__ import annotations

from pydantic import Field

from sluice.settings.base import _Strict


class RetentionConfig(_Strict):
    # Captured prompts and answers (audit.capture_content) older than this are replaced by a
    # tombstone that keeps their digest: the audit record stays, and the chain still verifies.
    content_days: int | None = Field(default=None, ge=1)
    # Request-log rows (metadata: who, which model, tokens, cost) older than this are deleted. The
    # spend ledger, which budgets read, is not touched.
    request_log_days: int | None = Field(default=None, ge=1)

    @property
    def active(self) -> bool:
        return self.content_days is not None or self.request_log_days is not None
