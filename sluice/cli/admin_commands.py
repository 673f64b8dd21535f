"""The typer commands of `sluice config plan | apply | export` and `sluice admin ...`; the work
is done in `sluice.cli.admin`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from sluice.settings import AuditConfig, ConfigError, load_config

StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (default: the config's, or ./sluice.db).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Config file whose store to use.")]

admin_app = typer.Typer(help="Admin API access: the bootstrap token and admin API tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Admin API tokens (stored hashed; the secret is shown once).", no_args_is_help=True)
admin_app.add_typer(token_app, name="token")


def _store_url(config: Path | None, store: str | None) -> str:
    from sluice.cli.main import _store_url as url

    return url(config, store)


def _audit_config(config: Path | None) -> AuditConfig:
    from sluice.cli.main import _audit_config as audit

    return audit(config)


def _declarative_store(path: Path, config: Path | None, store: str | None) -> str:
    """--store, else --config's store, else the declarative file's own store.url, else ./sluice.db."""
    if store or config:
        return _store_url(config, store)
    from sluice.cli.admin import read_file

    doc = read_file(path)
    url = ((doc or {}).get("store") or {}).get("url") if isinstance(doc, dict) else None
    return url if isinstance(url, str) and not url.startswith("env.") else _store_url(None, None)


def _declarative_audit(path: Path, config: Path | None) -> AuditConfig:
    if config:
        return _audit_config(config)
    try:
        return load_config(path).audit
    except ConfigError:
        return AuditConfig()


def config_plan(path: Path, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Show what `apply` would change in the live store to make it match FILE."""
    from sluice.admin.declarative import DeclarationError
    from sluice.cli import admin

    try:
        lines = asyncio.run(admin.plan_file(_declarative_store(path, config, store), path))
    except (DeclarationError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in lines:
        typer.echo(line)


def config_apply(path: Path, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Make the live store match FILE, in one transaction; each change is a configuration event.
    A running gateway applies it within a second."""
    from sluice.admin.declarative import DeclarationError
    from sluice.admin.secrets import SecretError
    from sluice.cli import admin

    try:
        lines, count = asyncio.run(
            admin.apply_file(_declarative_store(path, config, store), path, _declarative_audit(path, config))
        )
    except (DeclarationError, SecretError, OSError) as exc:
        typer.echo(f"error: nothing applied: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in lines:
        typer.echo(line)
    if count:
        typer.echo(f"Applied: {count} change(s) recorded.")


def config_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Write the live configuration as a declarative file (secrets as references or encrypted)."""
    from sluice.cli import admin

    text = asyncio.run(admin.export_store(_store_url(config, store)))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"exported to {output}")


@admin_app.command("bootstrap")
def admin_bootstrap(
    replace: Annotated[bool, typer.Option(help="Replace a bootstrap token set earlier.")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Set the bootstrap admin token once (stored hashed; shown once). SLUICE_ADMIN_TOKEN in the
    gateway's environment works as well, without storing anything."""
    from sluice.cli import admin

    secret = asyncio.run(admin.bootstrap(_store_url(config, store), replace, _audit_config(config)))
    if secret is None:
        typer.echo("error: a bootstrap token is set already; --replace to replace it", err=True)
        raise typer.Exit(1)
    typer.echo(f"bootstrap admin token (shown once, store it now): {secret}")


@token_app.command("create")
def admin_token_create(
    token_id: Annotated[str, typer.Option("--id", help="Stable id, e.g. ci-deploy.")],
    role: Annotated[
        list[str], typer.Option(help="admin, security-auditor, team-lead, developer, viewer (repeatable).")
    ],
    name: Annotated[str, typer.Option(help="Human-readable name.")] = "",
    team: Annotated[list[str] | None, typer.Option(help="Team a team-lead token leads (repeatable).")] = None,
    user: Annotated[str | None, typer.Option(help="The user a developer token acts for.")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Create an admin API token; its secret is printed once and only its hash is stored."""
    from sluice.auth.principal import ROLES
    from sluice.cli import admin

    roles = [r for r in ROLES if r in role]
    unknown = [r for r in role if r not in ROLES]
    if unknown:
        typer.echo(f"error: unknown role(s) {', '.join(unknown)}; use {', '.join(ROLES)}", err=True)
        raise typer.Exit(2)
    try:
        secret = asyncio.run(
            admin.token_create(
                _store_url(config, store),
                token_id,
                name,
                roles,
                team or [],
                user,
                _audit_config(config),
            )
        )
    except KeyError:
        typer.echo(f"error: an admin token {token_id!r} exists already", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"created admin token {token_id}")
    typer.echo(f"secret (shown once, store it now): {secret}")


@token_app.command("list")
def admin_token_list(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """List admin API tokens (never their secrets)."""
    from sluice.cli import admin

    for line in asyncio.run(admin.token_list(_store_url(config, store))):
        typer.echo(line)


@token_app.command("revoke")
def admin_token_revoke(token_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Revoke an admin API token at once."""
    from sluice.cli import admin

    if not asyncio.run(admin.token_revoke(_store_url(config, store), token_id, _audit_config(config))):
        typer.echo(f"error: no admin token {token_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked admin token {token_id}")
