"""A gateway sign-in token on a model surface: the person's virtual key, through the same failure
guard as a key's secret (an address that keeps failing is throttled either way)."""

from __future__ import annotations

from collections.abc import Mapping

from sluice.audit.auth_failures import REASONS as AUTH_REASONS
from sluice.audit.auth_failures import AuthGuard
from sluice.core.errors import ErrorKind, SluiceError
from sluice.engine.context import RequestContext
from sluice.gateway_signin.service import ACCESS_PREFIX, GatewaySignin
from sluice.governance.keys import credential_from
from sluice.storage.records import VirtualKey


def signin_token(signin: GatewaySignin | None, headers: Mapping[str, str]) -> str | None:
    """The request's gateway token, None when it carries a virtual key (or nothing)."""
    if signin is None:
        return None
    secret = credential_from(headers)
    return secret if secret is not None and secret.startswith(ACCESS_PREFIX) else None


async def admit(ctx: RequestContext, signin: GatewaySignin, guard: AuthGuard | None, token: str) -> VirtualKey:
    """Sets the request's key from its token (the engine then takes it as authenticated)."""

    async def attempt(cached_only: bool) -> VirtualKey:
        return await signin.key_for(token)

    try:
        key = await attempt(False) if guard is None else await guard.screen(ctx.surface.value, ctx.address, attempt)
    except SluiceError as err:
        if guard is not None and (err.kind in AUTH_REASONS or err.kind is ErrorKind.POLICY_RATE_LIMITED):
            ctx.audited = True  # the guard's counted record stands for this one
        raise
    ctx.key = key
    ctx.signed_in = True
    return key
