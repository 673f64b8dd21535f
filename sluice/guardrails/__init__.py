"""Guardrails: secrets, personal data, prompt injection and content policy, found in requests,
tool results, answers and MCP tool outputs, and audited, redacted (with restore), blocked or
alerted on. Pure but for `service`'s per-process state (rule sets, session vaults): no I/O."""
