"""Coding agent sessions: the ledger, session caps, runaway detection and the kill switch."""
