"""`sluice serve`: run the ASGI app under uvicorn and tell the operator how to connect."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn

from sluice.app import Services, build_services
from sluice.http.server import SluiceASGI
from sluice.settings import ConfigError, SluiceConfig, load_config

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


def run(cfg: SluiceConfig, *, host: str, port: int, store_url: str | None, log_level: str, config_path: Path) -> None:
    services = build_services(cfg, store_url=store_url)
    services.config_actor = f"file:{config_path}"
    asgi = SluiceASGI(services)
    config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level=log_level.lower(),
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve())
        while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn exposes no event
            await asyncio.sleep(0.05)
        if server.started:
            # Everything built at start-up lives for the whole process: keep it out of the
            # collector's way, and collect the young generation less often (requests allocate a
            # lot of short-lived objects and create no reference cycles on the hot path).
            gc.freeze()
            gc.set_threshold(10_000, 20, 20)
            show = sys.stdout.isatty() or os.environ.get("SLUICE_SHOW_SECRETS") == "1"
            print(banner(cfg, host, port, services.generated_secrets, show_secrets=show), flush=True)
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGHUP, lambda: asyncio.ensure_future(_reload(services, config_path))
            )
        await serving

    # uvicorn's loop="uvloop" only applies when uvicorn owns the loop; here we do.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        asyncio.run(main())
    else:
        uvloop.run(main())
