"""An MCP server's error, as logged and shown in its status, names no credential of its URL,
headers or environment (HTTP errors quote the URL they failed on)."""

from __future__ import annotations

from pydantic import SecretStr

from sluice.mcp.upstream import _scrub
from sluice.settings import McpServerConfig


def test_errors_lose_the_credentials_they_quote() -> None:
    cfg = McpServerConfig(
        name="remote",
        transport="http",
        url="https://svc:pw-secret-123@mcp.example/mcp?token=tok-secret-456&x=1",
        headers={"Authorization": SecretStr("Bearer hdr-secret-789")},
    )
    error = (
        "HTTPStatusError: Client error '401 Unauthorized' for url "
        "'https://svc:pw-secret-123@mcp.example/mcp?token=tok-secret-456&x=1' (sent hdr-secret-789)"
    )
    scrubbed = _scrub(error, cfg)
    assert all(s not in scrubbed for s in ("pw-secret-123", "tok-secret-456", "hdr-secret-789")), scrubbed
    assert "401 Unauthorized" in scrubbed and "mcp.example/mcp" in scrubbed
