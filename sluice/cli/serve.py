"""`sluice serve`: run the ASGI app (one process, or several on one port) and tell the operator
how to connect."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from sluice.app import Services, build_services
from sluice.core.tasks import spawn
from sluice.http import serving
from sluice.http.health import Readiness
from sluice.http.server import SluiceASGI
from sluice.settings import ConfigError, SluiceConfig, load_config
from sluice.upstream.fds import raise_open_files_limit

log = logging.getLogger("sluice.serve")


async def _reload(services: Services, path: Path) -> None:
    """SIGHUP: re-read the config file; a broken file changes nothing."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        log.error("config reload refused, nothing changed: %s", exc)
        return
    changes = await services.reload_file(config, f"file:{path}")
    log.warning("config reloaded from %s: %d change(s) recorded", path, changes)


def banner(cfg: SluiceConfig, host: str, port: int, generated: dict[str, str], *, show_secrets: bool) -> str:
    """How to connect. Secrets are printed only to an interactive terminal (or with
    SLUICE_SHOW_SECRETS=1): a service's output ends up in logs, where no secret belongs."""
    base = f"http://{host}:{port}"
    secrets = {vk.id: vk.value.get_secret_value() for vk in cfg.virtual_keys if vk.value is not None}
    secrets.update(generated)
    lines = [f"Sluice is listening on {base}"]
    if generated and not show_secrets:
        path = Path("sluice-generated-keys.txt")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.writelines(f"{key_id} {secret}\n" for key_id, secret in generated.items())
        lines.append(f"  generated secrets of {', '.join(generated)} written once to {path.resolve()} (mode 600)")
    for key_id, secret in generated.items() if show_secrets else ():
        lines.append(f"  generated secret for virtual key {key_id} (shown once): {secret}")
    if not secrets:
        lines.append("  no virtual key with a known secret: create one with `sluice keys create`")
        return "\n".join(lines)
    key_id, secret = next(iter(secrets.items()))
    if not show_secrets:
        secret = f"<secret of {key_id}>"
    lines += [
        "",
        f"Try it (virtual key {key_id}):",
        f"  curl -s {base}/v1/messages -H 'x-api-key: {secret}' -H 'anthropic-version: 2023-06-01' "
        "-H 'content-type: application/json' "
        '-d \'{"model":"fake/echo","max_tokens":64,"messages":[{"role":"user","content":"hello"}]}\'',
        "",
        "Claude Code through Sluice:",
        f"  export ANTHROPIC_BASE_URL={base}",
        f"  export ANTHROPIC_AUTH_TOKEN={secret}",
        "  export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
        "  claude",
        "",
        "Cursor / OpenAI clients:",
        f"  base URL {base}/v1, API key {secret}",
    ]
    return "\n".join(lines)


def workers_refusal(cfg: SluiceConfig, workers: int) -> str | None:
    """Why `workers` processes cannot serve this config, or None. The local backend counts
    budgets, rate and concurrency limits inside one process: N processes would each allow the
    whole limit, so N > 1 needs the counters shared in Redis."""
    if workers < 1:
        return "--workers must be at least 1"
    if workers > 1 and not sys.platform.startswith("linux"):
        # SO_REUSEPORT spreads connections over the processes only on Linux (BSD and macOS give
        # them all to the last socket bound; Windows has no such option).
        return "--workers above 1 needs Linux (SO_REUSEPORT); run one process per replica elsewhere"
    if workers > 1 and cfg.governance.backend != "redis":
        return (
            f"--workers {workers} needs governance.backend: redis. With the local backend every process "
            "counts budgets, rate limits and concurrency on its own, so each would allow the whole limit; "
            "set governance.backend: redis (and governance.redis_url), or run one worker per replica."
        )
    return None


def run(
    cfg: SluiceConfig,
    *,
    host: str,
    port: int,
    store_url: str | None,
    log_level: str,
    config_path: Path,
    workers: int = 1,
    drain_s: float = 30.0,
) -> None:
    """Serve in this process, or in `workers` processes on one port (see sluice/cli/workers.py)."""
    if workers > 1:
        from sluice.cli.workers import supervise

        supervise(
            config_path,
            host=host,
            port=port,
            store_url=store_url,
            log_level=log_level,
            workers=workers,
            drain_s=drain_s,
        )
        return
    try:
        sock = serving.bind(host, port, reuse_port=False)
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    serve_process(
        cfg,
        sock,
        config_path=config_path,
        store_url=store_url,
        log_level=log_level,
        drain_s=drain_s,
        banner_at=(host, sock.getsockname()[1]),
    )


def serve_process(
    cfg: SluiceConfig,
    sock: socket.socket,
    *,
    config_path: Path,
    store_url: str | None,
    log_level: str,
    drain_s: float,
    banner_at: tuple[str, int] | None,
    on_ready: Callable[[], None] | None = None,
    runner: serving.Runner = serving.run_uvicorn,
) -> None:
    """One gateway process on a bound socket, until SIGTERM or SIGINT; then it drains (stops
    accepting, lets requests in flight finish for up to `drain_s` seconds, settles and flushes the
    request log and audit) and returns, so the process exits 0."""
    raise_open_files_limit()  # each open stream holds two sockets: the soft limit runs out first
    services = build_services(cfg, store_url=store_url)
    services.config_actor = f"file:{config_path}"
    asgi = SluiceASGI(services)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def stopping(sig: signal.Signals) -> None:
            if not stop.is_set():
                log.warning("%s: draining (up to %.0f s for requests in flight)", sig.name, drain_s)
            readiness = asgi.routes.get(("GET", "/readyz"))
            if isinstance(readiness, Readiness):
                readiness.draining = True  # a probe still answered from here on says so
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: spawn(_reload(services, config_path), name="config-reload"))

        def ready() -> None:
            # Everything built at start-up lives for the whole process: keep it out of the
            # collector's way, and collect the young generation less often (requests allocate a
            # lot of short-lived objects and create no reference cycles on the hot path).
            gc.freeze()
            gc.set_threshold(10_000, 20, 20)
            if banner_at is not None:
                show = sys.stdout.isatty() or os.environ.get("SLUICE_SHOW_SECRETS") == "1"
                print(banner(cfg, *banner_at, services.generated_secrets, show_secrets=show), flush=True)
            if on_ready is not None:
                on_ready()

        await runner(asgi, sock, stop, drain_s=drain_s, log_level=log_level, on_ready=ready)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(main())
    else:
        uvloop.run(main())
