"""SQLAlchemy table definitions, shared by SQLite and PostgreSQL (Alembic migrates them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

virtual_keys = Table(
    "virtual_keys",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_hint", String(32), nullable=False),
    Column("team_id", String(200)),
    Column("customer_id", String(200)),
    Column("is_active", Boolean, nullable=False, default=True),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("grants", JSON, nullable=False),
    Column("fallbacks", JSON),
    Column("mcp", JSON),
    Column("user_id", String(200), index=True),
    Column("profile_id", String(200), index=True),
    Column("previous_key_hash", String(64), unique=True),
    Column("previous_valid_until", DateTime(timezone=True)),
    Column("source", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

request_log = Table(
    "request_log",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("path", String(300), nullable=False),
    Column("surface", String(40), nullable=False),
    Column("status", Integer, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("reason", Text),
    Column("error_kind", String(64)),
    Column("virtual_key_id", String(200)),
    Column("virtual_key_name", String(200)),
    Column("team_id", String(200)),
    Column("customer_id", String(200)),
    Column("client", String(300), nullable=False, default=""),
    Column("session_id", String(200)),
    Column("user_id", String(300)),
    Column("provider", String(100)),
    Column("provider_key_name", String(200)),
    Column("requested_model", String(300)),
    Column("model", String(300)),
    Column("stream", Boolean, nullable=False, default=False),
    Column("input_tokens", BigInteger, nullable=False, default=0),
    Column("output_tokens", BigInteger, nullable=False, default=0),
    Column("cache_read_tokens", BigInteger, nullable=False, default=0),
    Column("cache_write_tokens", BigInteger, nullable=False, default=0),
    Column("cost_pico", BigInteger, nullable=False, default=0),
    Column("latency_ms", Float, nullable=False, default=0),
    Column("ttfb_ms", Float),
    Column("attempts", JSON, nullable=False),
    Column("route", String(500)),
    Column("mcp_tools", JSON),
    Column("guardrails", Integer, nullable=False, default=0),
    Column("repo", String(300)),
    Column("branch", String(300)),
    Column("cwd", String(500)),
    Index("ix_request_log_ts", "ts"),
    Index("ix_request_log_key_ts", "virtual_key_id", "ts"),
)

spend_ledger = Table(
    "spend_ledger",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("virtual_key_id", String(200), nullable=False),
    Column("team_id", String(200)),
    Column("customer_id", String(200)),
    Column("cost_pico", BigInteger, nullable=False),
    Column("tokens", BigInteger, nullable=False),
    Index("ix_spend_key_ts", "virtual_key_id", "ts"),
    Index("ix_spend_team_ts", "team_id", "ts"),
    Index("ix_spend_customer_ts", "customer_id", "ts"),
)

config_objects = Table(
    "config_objects",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("body", JSON, nullable=False),
    Column("source", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

config_events = Table(
    "config_events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("actor", String(300), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("object_id", String(200), nullable=False),
    Column("action", String(16), nullable=False),
    Column("before", JSON),
    Column("after", JSON),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("actor", String(300), nullable=False),
    Column("data", JSON, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("prev_mac", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
)

audit_anchor = Table(
    "audit_anchor",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("anchor", JSON, nullable=False),  # {seq, mac, ts, key_id} of the last pruned record
    Column("seal", String(64), nullable=False),
)

audit_export_state = Table(
    "audit_export_state",
    metadata,
    Column("exporter", String(100), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The delivery lease: which process delivers to this sink, until when (Unix ms).
    Column("lease_holder", String(100), nullable=True),
    Column("lease_until", BigInteger, nullable=True),
)

audit_dead_letters = Table(
    "audit_dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("exporter", String(100), nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("error", Text, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
)

gateway_grants = Table(
    "gateway_grants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("device_hash", String(64), nullable=False, unique=True),
    Column("user_code", String(16), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("surface", String(64)),
    Column("last_poll", Float),
    Column("user_id", String(200), index=True),
    Column("key_id", String(200)),
    Column("refresh_hash", String(64), unique=True),
    Column("revoked_at", Float),
    Column("version", Integer, nullable=False),
    Column("client_id", String(64)),
    Column("redirect_uri", String(2048)),
    Column("code_challenge", String(128)),
    Column("resource", String(2048)),
)

# Clients of the MCP authorization server (RFC 7591 dynamic registration), public clients only.
oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("client_name", String(200), nullable=False),
    Column("redirect_uris", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("address", String(64), nullable=False),
    Index("ix_oauth_clients_address_created", "address", "created_at"),
)

# Agents' own telemetry (OTLP metrics a signed-in agent exports to the gateway), per data point.
agent_metrics = Table(
    "agent_metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("user_id", String(200)),
    Column("virtual_key_id", String(200), nullable=False),
    Column("service", String(200), nullable=False),  # service.name: claude-code, codex, gemini-cli
    Column("metric", String(200), nullable=False),
    Column("attributes", JSON, nullable=False),
    Column("value", Float, nullable=False),
    Column("unit", String(50), nullable=False),
    Index("ix_agent_metrics_user_ts", "user_id", "ts"),
)

meta = Table(
    "sluice_meta",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Alert claims (sluice.alerts.monitor): one row per alert raised, pending until the alert is in
# the audit log (the claimed alert kept with it, so another process can raise it again when the
# claimer died), then recorded; pruned after `alerts.claim_retention_days` and its window.
alert_claim = Table(
    "alert_claim",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("alert_id", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("claimed_ms", BigInteger, nullable=False),
    Column("keep_until_ms", BigInteger, nullable=False),
    Column("audit_after", BigInteger, nullable=False),
    Column("alert", JSON(none_as_null=True)),  # SQL NULL, not JSON null: "IS NULL" finds it
    Index("ix_alert_claim_state", "state", "claimed_ms"),
)

# The kill switch (sluice.sessions.stops): one row per stop, lifted rather than deleted, so the
# table is its own history (who stopped what, why, and who resumed it).
stops = Table(
    "stops",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(16), nullable=False),
    Column("target", String(300), nullable=False),
    Column("key_id", String(64)),
    Column("reason", Text, nullable=False),
    Column("actor", String(300), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("lifted_at", DateTime(timezone=True)),
    Column("lifted_by", String(300)),
    Column("lift_reason", Text),
    Index("ix_stops_active", "lifted_at"),
)

# One row per agent session (a virtual key and the session id its client sent), kept by the
# request-log writer in the transaction that stores the session's requests (sluice.sessions.ledger).
agent_session = Table(
    "agent_session",
    metadata,
    Column("id", String(32), primary_key=True),  # sluice.sessions.ledger.ledger_id(key, session)
    Column("virtual_key_id", String(200), nullable=False),
    Column("session_id", String(200), nullable=False),
    Column("team_id", String(200)),
    Column("end_user", String(300)),  # what the client says of its user (metadata.user_id), not the key's owner
    Column("client", String(100)),
    Column("client_version", String(100)),
    Column("user_agent", String(300)),
    Column("repo", String(300)),
    Column("branch", String(300)),
    Column("cwd", String(500)),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=False),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("denied", Integer, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("cost_pico", BigInteger, nullable=False),
    Index("ix_agent_session_ended", "ended_at"),
    Index("ix_agent_session_key_ended", "virtual_key_id", "ended_at"),
    Index("ix_agent_session_team_ended", "team_id", "ended_at"),
)

# What a session used, counted: its models, the MCP tools it called, the kinds of its errors.
agent_session_item = Table(
    "agent_session_item",
    metadata,
    Column("session", String(32), primary_key=True),
    Column("kind", String(8), primary_key=True),  # model | tool | error
    Column("name", String(300), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("cost_pico", BigInteger, nullable=False),
)
