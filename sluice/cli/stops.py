"""`sluice stop`, `sluice resume` and `sluice stops`: the kill switch from the command line.

Written to the store (with its audit record, actor `cli:<user>`), where every running gateway
picks it up within its poll interval (`kill_switch.poll_interval_s`, 0.25 s by default)."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path
from typing import Annotated

import typer

from sluice.cli.admin_commands import ConfigOpt, StoreOpt, _audit_config, _store_url
from sluice.storage.records import Stop

ScopeArg = Annotated[str, typer.Argument(help="session, key, team or org.")]
TargetArg = Annotated[str, typer.Argument(help="The session, key or team id (nothing for org).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: recorded in the audit log and shown to callers.")]
KeyOpt = Annotated[
    str | None, typer.Option("--key", help="For a session: only this key's session (as a runaway pause is).")
]


def actor() -> str:
    return f"cli:{getpass.getuser()}"


async def _change(
    url: str, config: Path | None, lift: bool, scope: str, target: str, reason: str, key: str | None
) -> list[Stop]:
    from sluice.app import open_store
    from sluice.audit.log import AuditLog
    from sluice.sessions.stops import Stops

    store = open_store(url)
    try:
        await store.migrate()
        stops = Stops(store, AuditLog(_audit_config(config), store))
        if lift:
            return await stops.lift(scope, target, reason, actor(), key_id=key)
        return [await stops.throw(scope, target, reason, actor(), key_id=key)]
    finally:
        await store.close()


async def _list(url: str, everything: bool) -> list[Stop]:
    from sluice.app import open_store

    store = open_store(url)
    try:
        await store.migrate()
        return await store.list_stops(active_only=not everything)
    finally:
        await store.close()


def line(stop: Stop) -> str:
    scope = "key" if stop.scope == "virtual_key" else stop.scope
    what = f"{scope} {stop.target}".strip() + (f" (key {stop.key_id})" if stop.key_id else "")
    state = f"lifted {stop.lifted_at:%Y-%m-%dT%H:%M:%SZ} by {stop.lifted_by}" if stop.lifted_at else "in force"
    return f"#{stop.id} {what}: {stop.reason} (by {stop.actor}, {stop.created_at:%Y-%m-%dT%H:%M:%SZ}; {state})"


def _run(
    lift: bool, scope: str, target: str, reason: str, key: str | None, config: Path | None, store: str | None
) -> list[Stop]:
    try:
        return asyncio.run(_change(_store_url(config, store), config, lift, scope, target, reason, key))
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def stop(
    scope: ScopeArg,
    target: TargetArg = "",
    reason: ReasonOpt = "",
    key: KeyOpt = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Stop a session, a key, a team or the whole organisation: its requests are refused and its
    streams in flight end, on every replica within a second, until `sluice resume`."""
    if not reason.strip():
        typer.echo("error: say why with --reason (it is recorded and shown to the callers refused)", err=True)
        raise typer.Exit(2)
    [made] = _run(False, scope, target, reason, key, config, store)
    typer.echo(f"stopped: {line(made)}")


def resume(
    scope: ScopeArg,
    target: TargetArg = "",
    reason: ReasonOpt = "",
    key: KeyOpt = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Lift the stops in force on exactly this scope and target."""
    if not reason.strip():
        typer.echo("error: say why with --reason (it is recorded in the audit log)", err=True)
        raise typer.Exit(2)
    lifted = _run(True, scope, target, reason, key, config, store)
    if not lifted:
        typer.echo(f"error: nothing is stopped on {scope} {target}".rstrip(), err=True)
        raise typer.Exit(1)
    for stop in lifted:
        typer.echo(f"resumed: {line(stop)}")


def listing(
    everything: Annotated[bool, typer.Option("--all", help="Lifted stops too (the history).")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """The stops in force (or all of them)."""
    stops = asyncio.run(_list(_store_url(config, store), everything))
    if not stops:
        typer.echo("nothing is stopped")
    for stop in stops:
        typer.echo(line(stop))
