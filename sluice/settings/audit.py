"""The `audit` section: the chained log, exporters and content capture."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    model_validator,
)

from sluice.settings.base import _Strict


class AuditExporterConfig(_Strict):
    name: str = Field(min_length=1)
    type: Literal["webhook", "splunk_hec", "datadog", "elasticsearch", "otlp"]
    url: str
    secret: SecretStr | None = None  # webhook: signs the body
    token: SecretStr | None = None  # splunk_hec
    api_key: SecretStr | None = None  # datadog, elasticsearch
    username: str | None = None  # elasticsearch basic auth
    password: SecretStr | None = None
    index: str | None = None  # splunk_hec, elasticsearch
    tags: str = ""  # datadog
    headers: dict[str, str] = Field(default_factory=dict)  # webhook, otlp
    batch_size: int = Field(default=100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _credentials(self) -> AuditExporterConfig:
        needs = {"webhook": "secret", "splunk_hec": "token", "datadog": "api_key", "elasticsearch": "index"}
        field_name = needs.get(self.type)
        if field_name and getattr(self, field_name) is None:
            raise ValueError(f"audit exporter {self.name!r} ({self.type}) needs '{field_name}'")
        return self


class AuditExportConfig(_Strict):
    poll_interval_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    # A batch that failed this many times in a row is set aside as a dead letter, so one poison
    # batch cannot stop the export.
    max_failures: int = Field(default=20, ge=1)
    # One process delivers to each sink at a time, under a lease it renews before every delivery;
    # when it dies, another takes over once the lease lapses. Longer than one delivery can take
    # (a sink's timeouts: 5 s to connect, 30 s to the first byte, 30 s to read).
    lease_s: float = Field(default=90.0, ge=1)


class ContentCaptureConfig(_Strict):
    """Whose prompts and answers go into the audit log (secrets redacted first). Nobody's by default."""

    virtual_keys: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    max_bytes: int = Field(default=65_536, ge=256)


class AuditConfig(_Strict):
    # The key that seals new records, and its id (recorded in each record, so keys can rotate).
    hmac_key: SecretStr | None = None
    key_id: str = "k1"
    # Keys of earlier ids, still needed to verify the records they sealed.
    previous_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # A request whose audit record cannot be made durable is not served (the default, as the most
    # trusted secret stores do); false serves it anyway and logs the failure.
    refuse_unrecorded: bool = True
    # Signed checkpoints of the chain head (Ed25519), kept apart from the log, reveal truncation.
    # On by default: without `checkpoint_key`, a key is generated on first start and kept in
    # `checkpoint_key_path` (mode 600); without paths, both live beside the SQLite file, or in the
    # working directory (named after the database) for PostgreSQL. false turns checkpoints off.
    checkpoints: bool = True
    checkpoint_key: SecretStr | None = None  # base64 Ed25519 seed (`sluice audit keygen`)
    checkpoint_key_path: str | None = None
    checkpoint_public_key: str | None = None  # for verification (default: the generated key's .pub file)
    checkpoint_path: str | None = None
    checkpoint_every_records: int = Field(default=1000, ge=1)
    checkpoint_every_seconds: float = Field(default=60.0, gt=0)
    capture_content: ContentCaptureConfig = Field(default_factory=ContentCaptureConfig)
    # `sluice audit prune` removes records older than this (the chain stays verifiable).
    retention_days: int | None = Field(default=None, ge=1)
    exporters: list[AuditExporterConfig] = Field(default_factory=list)
    export: AuditExportConfig = Field(default_factory=AuditExportConfig)

    @property
    def enabled(self) -> bool:
        return self.hmac_key is not None

    def keys(self) -> dict[str, bytes]:
        found = {kid: k.get_secret_value().encode() for kid, k in self.previous_keys.items()}
        if self.hmac_key is not None:
            found[self.key_id] = self.hmac_key.get_secret_value().encode()
        return found
