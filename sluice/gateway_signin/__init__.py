"""Agents sign people in to Sluice with Claude Code's gateway sign-in protocol
(docs/design/claude-gateway-protocol.md)."""
