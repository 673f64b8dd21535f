"""`sluice connect CLIENT`: what each coding agent needs in its own settings to go through Sluice.

One function per client says which file, which values, which environment variables and which manual
steps; `settings_files` does the merging. The values come from each client's documentation and from
watching the real CLIs (tests/fixtures/*/FINDINGS.md): where a client can read the key from an
environment variable, the file names the variable and the key stays out of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sluice.cli.settings_files import Format, WriteResult, merge_into_file, render_snippet

KEY_VAR = "SLUICE_API_KEY"  # what Codex and opencode read the virtual key from

# Where an agent works, for the session ledger (docs/sessions.md). The agents read their custom
# headers once, at start-up, so these are the values of the directory an agent was started in:
# `workspace` recomputes them each time the shell starts one (a branch switched during a session
# is not seen). Nothing here holds a secret: a remote URL loses its credentials.
WORKSPACE_VARS = {"x-sluice-repo": "SLUICE_REPO", "x-sluice-branch": "SLUICE_BRANCH", "x-sluice-cwd": "SLUICE_CWD"}
WORKSPACE_FUNCTION = [
    "sluice_workspace() {",
    "  SLUICE_CWD=$PWD",
    "  SLUICE_REPO=$(git remote get-url origin 2>/dev/null"
    " | sed -e 's#^[A-Za-z+]*://##' -e 's#^[^@/]*@##' -e 's#\\.git$##')",
    '  [ -n "$SLUICE_REPO" ] || SLUICE_REPO=$(basename "$(git rev-parse --show-toplevel 2>/dev/null)" 2>/dev/null)',
    "  SLUICE_BRANCH=$(git branch --show-current 2>/dev/null)",
    "  export SLUICE_REPO SLUICE_BRANCH SLUICE_CWD",
    "}",
]
SHELL_NOTE = (
    "# Optional, in your shell profile: each session reports the repository, branch and directory"
    " it was started in (x-sluice-repo, -branch, -cwd; read once when the agent starts):"
)


class ConnectError(Exception):
    """The request cannot be turned into a setup (e.g. a client that needs a model name got none)."""


@dataclass(frozen=True, slots=True)
class Setup:
    client: str
    path: Path | None  # the settings file; None when there is none we can safely write (Cursor)
    fmt: Format = "json"
    patch: dict[str, Any] = field(default_factory=dict)
    private: bool = False  # the file will hold the key itself
    env: dict[str, str] = field(default_factory=dict)  # variables to export in the user's shell
    shell: list[str] = field(default_factory=list)  # shell functions that start the agent with workspace headers
    notes: list[str] = field(default_factory=list)


def gateway_root(url: str) -> str:
    """The gateway's root URL: each client appends its own API prefix (/v1, /v1beta ...)."""
    return url.strip().rstrip("/").removesuffix("/v1")


def claude_code(root: str, key: str, model: str | None, home: Path) -> Setup:
    env = {
        "ANTHROPIC_BASE_URL": root,
        "ANTHROPIC_AUTH_TOKEN": key,  # sent as Authorization: Bearer
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no telemetry, error reporting or update checks
    }
    if model:
        env["ANTHROPIC_MODEL"] = model
    return Setup(
        "claude-code",
        home / ".claude" / "settings.json",
        patch={"env": env},
        private=True,
        shell=[
            *WORKSPACE_FUNCTION,
            # A subshell, so nothing stays set in the user's shell; `exec` runs the real binary.
            "claude() ( sluice_workspace; export ANTHROPIC_CUSTOM_HEADERS="
            "\"$(printf 'x-sluice-repo: %s\\nx-sluice-branch:"
            ' %s\\nx-sluice-cwd: %s\' "$SLUICE_REPO" "$SLUICE_BRANCH" "$SLUICE_CWD")"; exec claude "$@" )',
        ],
        notes=["Claude Code reads the env block at start-up: restart running sessions."],
    )


def claude_code_signin(root: str, home: Path, managed_file: Path | None = None) -> Setup:
    """Claude Code's own sign-in to the gateway (auth.gateway_signin): its /login opens on the
    "Cloud gateway" screen with this address, and no key is distributed. In the user's settings
    for one machine, or a managed-settings.json for device management (admin-controlled: the
    user cannot change it; /etc/claude-code/managed-settings.json on Linux)."""
    notes = ["Then run `claude` and /login: it opens on the Cloud gateway screen; sign in in the browser."]
    if managed_file is not None:
        notes.insert(0, "Deliver this file with your device management (MDM, configuration management).")
    return Setup(
        "claude-code",
        managed_file or home / ".claude" / "settings.json",
        patch={"forceLoginMethod": "gateway", "forceLoginGatewayUrl": root},
        notes=notes,
    )


def codex(root: str, key: str, model: str | None, home: Path) -> Setup:
    patch: dict[str, Any] = {"model": model} if model else {}
    patch |= {
        "model_provider": "sluice",
        "model_providers": {
            "sluice": {
                "name": "Sluice",
                "base_url": f"{root}/v1",
                "env_key": KEY_VAR,
                "wire_api": "responses",
                # Sent only when the variable is set and not empty (Codex's docs/config.md).
                "env_http_headers": dict(WORKSPACE_VARS),
            }
        },
        "analytics": {"enabled": False},
        "feedback": {"enabled": False},  # /feedback would upload session logs to OpenAI
    }
    return Setup(
        "codex",
        home / ".codex" / "config.toml",
        fmt="toml",
        patch=patch,
        env={KEY_VAR: key},
        shell=[*WORKSPACE_FUNCTION, 'codex() ( sluice_workspace; exec codex "$@" )'],
        notes=[
            "Codex reads the key from $SLUICE_API_KEY on every run (CODEX_HOME moves the config file).",
            # docs/agents/codex.md, "On other vendors' models".
            "On a model that is not OpenAI's, Codex's hosted web search is left out (x-sluice-dropped-tools).",
        ],
    )


def gemini_cli(root: str, key: str, model: str | None, home: Path) -> Setup:
    patch: dict[str, Any] = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        # Left on, usage statistics also add an installation id header to every model request.
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
    }
    if model:
        patch["model"] = {"name": model}
    return Setup(
        "gemini-cli",
        home / ".gemini" / "settings.json",
        patch=patch,
        env={"GOOGLE_GEMINI_BASE_URL": root, "GEMINI_API_KEY": key},
        shell=[
            *WORKSPACE_FUNCTION,
            # Gemini CLI sends no session id of its own: each start is a session, named here.
            'gemini() ( sluice_workspace; export GEMINI_CLI_CUSTOM_HEADERS="x-sluice-session: $(od -An -N16 -tx1'
            " /dev/urandom | tr -d ' \\n'),x-sluice-repo: $SLUICE_REPO,x-sluice-branch: $SLUICE_BRANCH,x-sluice-cwd:"
            ' $SLUICE_CWD"; exec gemini "$@" )',
        ],
        notes=[]
        if model
        else ["Without a model, Gemini CLI's 'auto' routing asks a flash-lite model first each turn."],
    )


def cursor(root: str, key: str, model: str | None, home: Path) -> Setup:
    # Cursor keeps these in its own app state, not in a file another program may safely edit.
    steps = [
        "Cursor has no settings file Sluice can safely write; in the app:",
        "  1. Cursor Settings (Ctrl+, / Cmd+,) -> Models.",
        f"  2. OpenAI API Key: paste {key}",
        f"  3. Turn on 'Override OpenAI Base URL' and enter {root}/v1",
        f"  4. Add the model name{f' {model}' if model else 's the key allows'} under 'Add or search model'.",
        "  5. Verify: Cursor calls GET /v1/models, which lists the models the key may use.",
        "Cursor makes these calls from its own servers: the gateway must be reachable from the internet.",
    ]
    return Setup("cursor", None, notes=steps)


def opencode(root: str, key: str, model: str | None, home: Path) -> Setup:
    if not model:
        raise ConnectError("opencode lists a custom provider's models in its config: pass --model")
    provider = {
        "npm": "@ai-sdk/openai-compatible",
        "name": "Sluice",
        "options": {"baseURL": f"{root}/v1", "apiKey": "{env:" + KEY_VAR + "}"},
        "models": {model: {"name": model}},
    }
    patch = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {"sluice": provider},
        "model": f"sluice/{model}",
        "share": "disabled",  # a shared session is uploaded to opencode's servers, outside the gateway
    }
    return Setup(
        "opencode",
        home / ".config" / "opencode" / "opencode.json",
        patch=patch,
        env={KEY_VAR: key},
        notes=["A project's own opencode.json still overrides these settings."],
    )


CLIENTS: dict[str, Callable[[str, str, str | None, Path], Setup]] = {
    "claude-code": claude_code,
    "codex": codex,
    "gemini-cli": gemini_cli,
    "cursor": cursor,
    "opencode": opencode,
}


def setup_for(client: str, url: str, key: str, model: str | None, home: Path) -> Setup:
    try:
        make = CLIENTS[client]
    except KeyError:
        raise ConnectError(f"unknown client {client!r}; one of: {', '.join(CLIENTS)}") from None
    return make(gateway_root(url), key, model, home)


def with_telemetry(setup: Setup, url: str, key: str) -> Setup:
    """The agent's own OpenTelemetry to the gateway's OTLP/HTTP receiver, with the virtual key as
    its bearer (docs/observability.md, "Agents' own telemetry"): Codex's `[otel]` exporters (its
    docs/config.md; the headers are sent as written, `${VAR}` is not expanded, so the key is in
    the file), Gemini CLI's `telemetry` settings (its docs/cli/telemetry.md) with the header and
    delta temporality from the OpenTelemetry JS exporter's environment variables."""
    root = gateway_root(url)
    if setup.client == "codex":

        def exporter(signal: str) -> dict[str, Any]:
            http = {
                "endpoint": f"{root}/v1/{signal}",
                "protocol": "binary",
                "headers": {"authorization": f"Bearer {key}"},
            }
            return {"otlp-http": http}

        otel = {"exporter": exporter("logs"), "metrics_exporter": exporter("metrics")}
        note = "Codex exports its events (logs) and metrics to the gateway; config.toml now holds the key."
        return replace(setup, patch=setup.patch | {"otel": otel}, private=True, notes=[*setup.notes, note])
    if setup.client == "gemini-cli":
        telemetry = {"enabled": True, "target": "local", "otlpEndpoint": root, "otlpProtocol": "http"}
        telemetry["logPrompts"] = False  # the prompts' text stays out of the events
        env = setup.env | {
            "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer {key}",
            # Counters as what they added since the last export (the SDK's default is running totals).
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
        }
        note = "The OTEL_EXPORTER_OTLP_* variables apply to every OpenTelemetry program started from that shell."
        return replace(setup, patch=setup.patch | {"telemetry": telemetry}, env=env, notes=[*setup.notes, note])
    raise ConnectError("--telemetry is for codex and gemini-cli (claude-code: --signin's managed settings)")


def _display(path: Path) -> str:
    # Relative to the real home only: under --home DIR a "~/" would point somewhere else.
    home = Path.home()
    return "~/" + str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


def instructions(setup: Setup) -> list[str]:
    """What to print without --write: the values for the file, the exports, the notes."""
    lines: list[str] = []
    if setup.path is not None:
        lines.append(f"# Merge into {_display(setup.path)} (or run again with --write):")
        lines.extend(render_snippet(setup.patch, setup.fmt).rstrip("\n").splitlines())
    return lines + _exports(setup)


def write(setup: Setup) -> list[str]:
    """Merge into the client's file; what happened, then the exports and notes."""
    if setup.path is None:
        return ["Nothing written.", *setup.notes]
    result: WriteResult = merge_into_file(setup.path, setup.patch, setup.fmt, private=setup.private)
    shown = _display(setup.path)
    if not result.changed:
        lines = [f"{shown} is already set up; nothing changed."]
    elif result.backup is not None:
        lines = [f"Updated {shown} (previous version kept as {_display(result.backup)})."]
    else:
        lines = [f"Wrote {shown}."]
    return lines + _exports(setup)


def _exports(setup: Setup) -> list[str]:
    lines = []
    if setup.env:
        lines.append("# In your shell profile:")
        lines.extend(f"export {name}={_quote(value)}" for name, value in setup.env.items())
    if setup.shell:
        lines.append(SHELL_NOTE)
        lines.extend(setup.shell)
    return lines + setup.notes


def _quote(value: str) -> str:
    safe = all(c.isalnum() or c in "-_./:@+=," for c in value)
    return value if safe and value else "'" + value.replace("'", "'\\''") + "'"
