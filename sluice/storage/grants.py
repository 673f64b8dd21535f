"""One sign-in of an agent through the gateway sign-in (sluice.gateway_signin): its device code,
then the person who approved it, then its refresh token, until it is revoked or expires."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

GrantStatus = Literal["pending", "approved", "denied", "active", "revoked"]
# The columns a grant can be found by (each unique or indexed in the table).
GrantLookup = Literal["id", "device_hash", "user_code", "refresh_hash"]


@dataclass(frozen=True, slots=True)
class GatewayGrant:
    id: str
    device_hash: str  # sha256 hex of the device code; the code itself is never stored
    user_code: str
    status: GrantStatus
    created_at: float  # epoch seconds
    expires_at: float  # the device code's end while pending/approved, the refresh token's end once active
    surface: str | None = None  # what the client says it is (Claude Code: "claude_code")
    last_poll: float | None = None
    user_id: str | None = None
    key_id: str | None = None  # the person's virtual key: their profile's budgets, allowlists and MCP grants
    refresh_hash: str | None = None
    revoked_at: float | None = None
    version: int = 0  # bumped by every swap: the compare in compare-and-set
    # An authorization-code grant (MCP authorization, sluice.gateway_signin.authcode): the code's
    # hash is `device_hash`, and these bind it to its client, redirect and PKCE challenge. A grant
    # with a code_challenge is never a device code, and its tokens' audience is `resource`.
    client_id: str | None = None
    redirect_uri: str | None = None
    code_challenge: str | None = None
    resource: str | None = None


@dataclass(frozen=True, slots=True)
class OAuthClient:
    """A client registered by RFC 7591 dynamic registration (an MCP client such as Claude Code):
    public (no secret), identified by its id and the exact redirect URIs it registered."""

    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    created_at: float  # epoch seconds
    address: str  # who registered it: registrations are counted per address


# The agents' metrics the spend report sums (sluice.gateway_signin.otlp decides which points of
# them are stored): dollars, then tokens.
AGENT_COST_METRICS = ("claude_code.cost.usage",)  # USD; neither Codex nor Gemini CLI reports a cost
AGENT_TOKEN_METRICS = ("claude_code.token.usage", "gemini_cli.token.usage", "codex.turn.token_usage")


@dataclass(frozen=True, slots=True)
class AgentMetric:
    """One data point of an agent's own telemetry, attributed to the signed-in person."""

    ts: datetime
    user_id: str | None
    virtual_key_id: str
    service: str
    metric: str
    attributes: dict[str, Any]
    value: float
    unit: str = ""
