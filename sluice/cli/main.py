"""The `sluice` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from sluice.cli.sessions import sessions_app
from sluice.settings import AuditConfig, ConfigError, SluiceConfig, load_config

app = typer.Typer(help="Sluice: the AI gateway that governs every coding agent.", no_args_is_help=True)
config_app = typer.Typer(
    help="Check config files; plan, apply and export the live configuration as code.", no_args_is_help=True
)
keys_app = typer.Typer(help="Create, list and revoke virtual keys in the store.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys_app, name="keys")
budgets_app = typer.Typer(
    help="Live budgets in the store (the running gateway applies changes within a second).", no_args_is_help=True
)
app.add_typer(budgets_app, name="budgets")
app.add_typer(sessions_app, name="sessions")
route_app = typer.Typer(help="Inspect routing.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(route_app, name="route")
policy_app = typer.Typer(help="Try a policy change on the recorded traffic before making it.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="YAML or JSON config file.")]


def _load(path: Path) -> SluiceConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigPath,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default from config: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default from config: 8080).")] = None,
    store: Annotated[str | None, typer.Option(help="Store URL, overriding the config's store.url.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    workers: Annotated[
        int | None,
        typer.Option(help="Processes on the port (default from config: 1); more than one needs the redis backend."),
    ] = None,
    drain_seconds: Annotated[
        float | None,
        typer.Option(help="On SIGTERM, how long streams in flight may take to finish (default from config: 30)."),
    ] = None,
) -> None:
    """Run the gateway."""
    from sluice.cli.serve import run, workers_refusal

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = _load(config)
    count = cfg.server.workers if workers is None else workers
    refusal = workers_refusal(cfg, count)
    if refusal is not None:
        typer.echo(f"error: {refusal}", err=True)
        raise typer.Exit(2)
    run(
        cfg,
        host=host or cfg.server.host,
        port=cfg.server.port if port is None else port,
        store_url=store,
        log_level=log_level,
        config_path=config,
        workers=count,
        drain_s=cfg.server.drain_seconds if drain_seconds is None else drain_seconds,
    )


@config_app.command("validate")
def config_validate(path: Path) -> None:
    """Check a config file; exits non-zero with the reason when it is not usable."""
    from sluice.pricing.checks import unpriced_warnings  # the price data loads in a second: only here
    from sluice.pricing.table import PriceTable

    cfg = _load(path)
    table = PriceTable.bundled(cfg.pricing)
    for warning in [*cfg.warnings(), *unpriced_warnings(cfg, table)]:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"ok: {len(cfg.providers)} provider(s), {len(cfg.virtual_keys)} virtual key(s)")


def _store_url(config: Path | None, store: str | None) -> str:
    if store:
        return store
    if config:
        return _load(config).store.url
    return "sqlite+aiosqlite:///sluice.db"


def _audit_config(config: Path | None) -> AuditConfig:
    return _load(config).audit if config else AuditConfig()


StoreOpt = Annotated[str | None, typer.Option("--store", help="Store URL (default: the config's, or ./sluice.db).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Config file whose store to use.")]


@keys_app.command("create")
def keys_create(
    key_id: Annotated[str, typer.Option("--id", help="Stable id, e.g. vk-alice.")],
    allow: Annotated[
        list[str],
        typer.Option(help="PROVIDER or PROVIDER=MODEL1,MODEL2 (repeatable). A bare PROVIDER allows any model."),
    ],
    name: Annotated[str, typer.Option(help="Human-readable name.")] = "",
    team: Annotated[str | None, typer.Option(help="Team id.")] = None,
    customer: Annotated[str | None, typer.Option(help="Customer id.")] = None,
    expires: Annotated[str | None, typer.Option(help="Expiry, ISO 8601 (UTC if no offset).")] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Create a virtual key. Its secret is printed once and never stored."""
    from sluice.cli import keys

    expires_at = _parse_time(expires) if expires else None
    url, audit = _store_url(config, store), _audit_config(config)
    secret = asyncio.run(keys.create(url, key_id, name, allow, team, customer, expires_at, audit))
    typer.echo(f"created virtual key {key_id}")
    typer.echo(f"secret (shown once, store it now): {secret}")


@keys_app.command("list")
def keys_list(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """List virtual keys (never their secrets)."""
    from sluice.cli import keys

    for line in asyncio.run(keys.listing(_store_url(config, store))):
        typer.echo(line)


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Revoke a virtual key; a running gateway refuses it within a second."""
    from sluice.cli import keys

    if not asyncio.run(keys.revoke(_store_url(config, store), key_id, _audit_config(config))):
        typer.echo(f"error: no active virtual key {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


@budgets_app.command("set")
def budgets_set(
    budget_id: Annotated[str, typer.Option("--id", help="Budget id.")],
    max_limit: Annotated[str, typer.Option("--max-limit", help="Dollars per window, e.g. 30.00.")],
    reset: Annotated[str, typer.Option("--reset", help="Window: 1h, 1d, 1w, 1M ...")],
    key: Annotated[str | None, typer.Option("--key", help="Attach to this virtual key id.")] = None,
    team: Annotated[str | None, typer.Option("--team", help="Attach to this team id.")] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="Attach to this customer id.")] = None,
    calendar_aligned: Annotated[bool, typer.Option(help="Reset at the UTC calendar boundary.")] = False,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Create or change a budget; recorded as a configuration event."""
    from pydantic import ValidationError

    from sluice.cli import budgets
    from sluice.settings import BudgetConfig

    try:
        budget = BudgetConfig(
            id=budget_id,
            virtual_key_id=key,
            team_id=team,
            customer_id=customer,
            max_limit=max_limit,
            reset_duration=reset,
            calendar_aligned=calendar_aligned,
        )
    except ValidationError as exc:
        typer.echo(f"error: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None
    typer.echo(asyncio.run(budgets.set_budget(_store_url(config, store), budget, _audit_config(config))))


@budgets_app.command("delete")
def budgets_delete(budget_id: str, config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Remove a budget; recorded as a configuration event."""
    from sluice.cli import budgets

    if not asyncio.run(budgets.delete_budget(_store_url(config, store), budget_id, _audit_config(config))):
        typer.echo(f"error: no budget {budget_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"deleted budget {budget_id}")


@budgets_app.command("list")
def budgets_list(config: ConfigOpt = None, store: StoreOpt = None) -> None:
    """Budgets with what their current window has spent."""
    from sluice.cli import budgets

    for line in asyncio.run(budgets.listing(_store_url(config, store))):
        typer.echo(line)


@config_app.command("events")
def config_events(
    limit: Annotated[int, typer.Option(help="How many, newest last.")] = 50,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Configuration changes (who, when, before and after), one JSON object per line."""
    from sluice.cli import budgets

    for line in asyncio.run(budgets.events(_store_url(config, store), limit)):
        typer.echo(line)


@route_app.command("explain")
def route_explain(
    config: ConfigPath,
    key: Annotated[str, typer.Option("--key", help="Virtual key id.")],
    model: Annotated[str, typer.Option("--model", help="The model the request asks for.")],
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="NAME: VALUE (repeatable).")] = None,
    store: StoreOpt = None,
) -> None:
    """Which rule and alias would apply to a request, and which providers would serve it."""
    from sluice.cli.route import explain

    cfg = _load(config)
    headers = {}
    for item in header or []:
        name, sep, value = item.partition(":")
        if not sep:
            typer.echo(f"error: header {item!r} is not NAME: VALUE", err=True)
            raise typer.Exit(2)
        headers[name.strip().lower()] = value.strip()
    for line in asyncio.run(explain(cfg, store or cfg.store.url, key, model, headers)):
        typer.echo(line)


@policy_app.command("simulate")
def policy_simulate(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The proposed config file (validated as `sluice serve` would).")
    ],
    since: Annotated[
        str, typer.Option(help="Replay from: a span before now (7d, 12h, 30m, 2w) or an ISO time.")
    ] = "7d",
    until: Annotated[str | None, typer.Option(help="Replay up to this ISO time (default: now).")] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="The live store whose log to replay (default: ./sluice.db).")
    ] = None,
    live_config: Annotated[
        Path | None, typer.Option("--live-config", help="Take the live store's URL from this config file instead.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="The whole report as JSON.")] = False,
    top: Annotated[int, typer.Option(help="Teams, developers and reroutes shown in the text report.")] = 20,
    examples: Annotated[int, typer.Option(help="Request ids kept per outcome (refused, rerouted, ...).")] = 20,
) -> None:
    """Replay the recorded request log against a proposed configuration (allowlists, budgets,
    rate limits, routing rules, aliases) and report, per developer and team, what would have
    been refused (by which rule), rerouted or degraded, and the cost difference. Read-only: the
    store is never written, no provider is called. The proposal's own store, Redis and exporter
    settings are not used. See docs/policy-simulation.md."""
    from sluice.cli import policy

    proposal = _load(config)
    now = datetime.now(UTC)
    try:
        start = policy.parse_since(since, now)
        end = policy.parse_since(until, now) if until else None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    url = store or (_load(live_config).store.url if live_config else "sqlite+aiosqlite:///sluice.db")
    missing = policy.missing_store(url)
    if missing is not None:
        typer.echo(f"error: {missing}", err=True)
        raise typer.Exit(2)
    report = asyncio.run(policy.run(proposal, url, start, end, examples))
    typer.echo(policy.render(report, json_out, top))


@audit_app.command("verify")
def audit_verify(
    config: ConfigPath,
    file: Annotated[Path | None, typer.Option("--file", help="Check this export instead of the store.")] = None,
    store: StoreOpt = None,
) -> None:
    """Check the whole chain; exits 1 and names the first broken record."""
    from sluice.cli import audit

    cfg = _load(config)
    keys = cfg.audit.keys()
    if not keys:
        typer.echo("error: no audit key configured (audit.hmac_key)", err=True)
        raise typer.Exit(2)
    verdict = (
        audit.verify_file(file, cfg.audit, store or cfg.store.url)
        if file
        else asyncio.run(audit.verify_store(store or cfg.store.url, cfg.audit))
    )
    if verdict.ok:
        typer.echo(f"ok: {verdict.checked} record(s), chain intact")
        return
    typer.echo(f"BROKEN after {verdict.checked} good record(s): {verdict.problem}")
    raise typer.Exit(1)


@audit_app.command("prune")
def audit_prune(
    config: ConfigPath,
    keep_days: Annotated[int | None, typer.Option(help="Keep this many days (default: audit.retention_days).")] = None,
    store: StoreOpt = None,
) -> None:
    """Remove records past retention; the rest still verifies (through a sealed anchor)."""
    from sluice.cli import audit

    cfg = _load(config)
    days = keep_days or cfg.audit.retention_days
    if not cfg.audit.enabled or not days:
        typer.echo("error: needs audit.hmac_key and --keep-days (or audit.retention_days)", err=True)
        raise typer.Exit(2)
    removed = asyncio.run(audit.prune(store or cfg.store.url, cfg.audit, days))
    typer.echo(f"pruned {removed} record(s) older than {days} day(s)")


@audit_app.command("erase")
def audit_erase(
    config: ConfigPath,
    user: Annotated[str | None, typer.Option(help="A Sluice user: the content of every key of theirs.")] = None,
    key: Annotated[str | None, typer.Option(help="One virtual key whose content to erase.")] = None,
    end_user: Annotated[str | None, typer.Option(help="The end-user id agents sent (metadata.user_id / user).")] = None,
    reason: Annotated[str, typer.Option(help="Recorded with the erasure, e.g. a ticket id.")] = "erasure request",
    store: StoreOpt = None,
) -> None:
    """Tombstone one person's captured prompts and answers (the audit chain still verifies) and
    blank their end-user id and working directory in the request log and the session ledger."""
    from sluice.cli import retention

    cfg = _load(config)
    if not cfg.audit.enabled or (user, key, end_user) == (None, None, None):
        typer.echo("error: needs audit.hmac_key and at least one of --user, --key, --end-user", err=True)
        raise typer.Exit(2)
    erased = asyncio.run(retention.erase(cfg, store or cfg.store.url, user, key, end_user, reason))
    typer.echo(f"erased the content of {len(erased.records)} record(s); the records and their seals stay")
    typer.echo(
        f"blanked the end-user id and working directory of {erased.log_rows} request-log row(s)"
        f" and {erased.sessions} session(s)"
    )
    if erased.legacy:
        typer.echo(
            f"warning: {erased.legacy} record(s) hold content sealed whole (before 0.1.0's digests): left in place"
        )


@audit_app.command("retention")
def audit_retention(config: ConfigPath, store: StoreOpt = None) -> None:
    """Apply retention.content_days and retention.request_log_days once."""
    from sluice.cli import retention

    cfg = _load(config)
    if not cfg.retention.active:
        typer.echo("error: the config sets neither retention.content_days nor retention.request_log_days", err=True)
        raise typer.Exit(2)
    done = asyncio.run(retention.run_once(cfg, store or cfg.store.url))
    typer.echo(
        f"content tombstoned in {done['content']} record(s), {done['request_log']} request-log row(s) deleted"
        + (f", {done['content_legacy']} legacy record(s) left" if done["content_legacy"] else "")
    )


@audit_app.command("keygen")
def audit_keygen() -> None:
    """A new Ed25519 key pair for signed checkpoints (audit.checkpoint_key / checkpoint_public_key)."""
    from sluice.cli import audit

    private, public = audit.keygen()
    typer.echo(f"checkpoint_key (secret, shown once; use env.NAME in the config): {private}")
    typer.echo(f"checkpoint_public_key: {public}")


@audit_app.command("export")
def audit_export(
    config: ConfigPath,
    since: Annotated[int, typer.Option(help="First sequence number.")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (the only format so far).")] = "jsonl",
    store: StoreOpt = None,
) -> None:
    """Write the records with their MACs to standard output, one JSON object per line."""
    from sluice.cli import audit

    if fmt != "jsonl":
        typer.echo("error: --format jsonl is the only format", err=True)
        raise typer.Exit(2)
    cfg = _load(config)
    asyncio.run(audit.export(store or cfg.store.url, since, sys.stdout, cfg.audit))


console_app = typer.Typer(help="The web console's data.", no_args_is_help=True)
app.add_typer(console_app, name="console")


@console_app.command("rebuild-rollup")
def console_rebuild_rollup(
    since: Annotated[
        str | None, typer.Option(help="First day to rebuild (ISO 8601; default: the log's first row).")
    ] = None,
    config: ConfigOpt = None,
    store: StoreOpt = None,
) -> None:
    """Rebuild the console's spend roll-up from the request log, one day at a time, with progress."""
    from sluice.storage.backends.console_rollup import RollupReads
    from sluice.storage.backends.sql import SqlStore

    first = _parse_time(since) if since else None

    def progress(day: datetime, done: int, days: int) -> None:
        typer.echo(f"{day:%Y-%m-%d}  {done}/{days} day(s)")

    async def run() -> int:
        sql = SqlStore(_store_url(config, store))
        try:
            await sql.migrate()
            return await RollupReads(sql.engine, write_lock=sql._write_lock).rebuild(first, progress=progress)
        finally:
            await sql.close()

    typer.echo(f"ok: rebuilt {asyncio.run(run())} day(s) of the console roll-up")


@app.command()
def connect(
    client: Annotated[str, typer.Argument(help="claude-code, codex, gemini-cli, cursor or opencode.")],
    url: Annotated[str, typer.Option("--url", help="The gateway's address, e.g. https://sluice.example.com.")],
    key: Annotated[str | None, typer.Option("--key", envvar="SLUICE_API_KEY", help="The virtual key.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Default model for the client.")] = None,
    signin: Annotated[
        bool, typer.Option("--signin", help="claude-code: sign in with the company account (no key).")
    ] = False,
    managed_file: Annotated[
        Path | None, typer.Option("--managed-file", help="With --signin: write a managed-settings.json for MDM.")
    ] = None,
    telemetry: Annotated[
        bool, typer.Option("--telemetry", help="codex, gemini-cli: export the agent's own OpenTelemetry to Sluice.")
    ] = False,
    write: Annotated[
        bool, typer.Option("--write", help="Merge into the client's settings file (backup kept).")
    ] = False,
    home: Annotated[Path | None, typer.Option("--home", help="Home directory holding the settings.")] = None,
) -> None:
    """Point a coding agent at Sluice: print its settings, or merge them into its own file with --write."""
    from sluice.cli import connect as setups
    from sluice.cli.settings_files import SettingsFileError

    base = home or Path.home()
    try:
        if signin:
            if client != "claude-code":
                raise setups.ConnectError("--signin is for claude-code (its /login speaks the gateway sign-in)")
            setup = setups.claude_code_signin(setups.gateway_root(url), base, managed_file)
        elif key is None:
            raise setups.ConnectError("--key (or SLUICE_API_KEY) is required, or --signin for claude-code")
        else:
            setup = setups.setup_for(client, url, key, model, base)
            if telemetry:
                setup = setups.with_telemetry(setup, url, key)
        lines = setups.write(setup) if write else setups.instructions(setup)
    except (setups.ConnectError, SettingsFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for line in lines:
        typer.echo(line)


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        typer.echo(f"error: {text!r} is not an ISO 8601 time", err=True)
        raise typer.Exit(2) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _register_admin() -> None:
    from sluice.cli import admin_commands

    config_app.command("plan")(admin_commands.config_plan)
    config_app.command("apply")(admin_commands.config_apply)
    config_app.command("export")(admin_commands.config_export)
    app.add_typer(admin_commands.admin_app, name="admin")


_register_admin()


def _register_stops() -> None:
    from sluice.cli import stops

    app.command("stop")(stops.stop)
    app.command("resume")(stops.resume)
    app.command("stops")(stops.listing)


_register_stops()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
