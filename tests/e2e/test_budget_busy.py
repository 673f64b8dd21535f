"""What each real agent CLI does with a 429 "budget busy" (POLICY_BUDGET_BUSY): the budget is not
spent, but another request in flight holds what is left. Each CLI must wait and retry, and get its
answer once the other request settles; a 402 (or Codex's 429 insufficient_quota) would stop it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e import agent_cli
from tests.e2e.gateway_process import GatewayProcess
from tests.fakes.upstream import FakeUpstreamThread

KEYS = {
    "claude": "sk-sluice-e2e-busy-claude-000000",
    "codex": "sk-sluice-e2e-busy-codex-0000000",
    "gemini": "sk-sluice-e2e-busy-gemini-000000",
}
MODELS = {"claude": "claude-sonnet-4-6", "codex": "gpt-5.5", "gemini": "gemini-2.5-flash"}
PROVIDER = {"claude": "anthropic", "codex": "openai", "gemini": "gemini"}
HOLDER = "claude-holder-slow"  # the fake upstream waits `slow_delay` before answering it
# Output dear, input nearly free: every stream reserves ~$1 (one 1,000-token block), whatever its
# body; two cannot be in flight together on a $1.50 budget, though one alone spends ~$0.01.
PRICE = {"input_cost_per_mtok": 0.001, "output_cost_per_mtok": 1000}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, FakeUpstreamThread]]:
    for cli in ("claude", "codex", "gemini"):
        agent_cli.installed(cli)
    with FakeUpstreamThread() as upstream:
        config = {
            "providers": {
                "anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-busy"}]},
                "openai": {"base_url": upstream.base_url + "/v1", "keys": [{"name": "o", "value": "sk-openai-busy"}]},
                "gemini": {"base_url": upstream.base_url, "keys": [{"name": "g", "value": "AIza-busy"}]},
            },
            "virtual_keys": [
                {
                    "id": f"vk-busy-{cli}",
                    "value": key,
                    "provider_configs": [
                        {"provider": "anthropic", "allowed_models": [HOLDER, "claude-sonnet-4-6"]},
                        {"provider": PROVIDER[cli], "allowed_models": [MODELS[cli]]},
                    ]
                    if cli != "claude"
                    else [{"provider": "anthropic", "allowed_models": [HOLDER, "claude-sonnet-4-6"]}],
                }
                for cli, key in KEYS.items()
            ],
            "pricing": {HOLDER: PRICE, **{model: PRICE for model in MODELS.values()}},
            "budgets": [
                {
                    "id": f"budget-busy-{cli}",
                    "virtual_key_id": f"vk-busy-{cli}",
                    "max_limit": 1.5,
                    "reset_duration": "1d",
                }
                for cli in KEYS
            ],
            "governance": {"default_max_tokens": 1000, "busy_wait_s": 0.5},
        }
        with GatewayProcess(config, tmp_path_factory.mktemp("busy-gw")) as gateway:
            yield gateway, upstream


def hold_budget(gateway: GatewayProcess, upstream: FakeUpstreamThread, key: str) -> threading.Thread:
    """Another request of the same key, in flight (the fake provider holds its first byte until
    the test sets `slow_delay` to 0), holding $1 of the $1.50."""
    upstream.upstream.reset()
    upstream.upstream.slow_delay = 120

    async def one() -> None:
        body = {"model": HOLDER, "max_tokens": 1000, "stream": True, "messages": [{"role": "user", "content": "hold"}]}
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        async with aiohttp.ClientSession() as session:
            async with session.post(gateway.base_url + "/v1/messages", json=body, headers=headers) as resp:
                assert resp.status == 200
                await resp.read()

    thread = threading.Thread(target=lambda: asyncio.run(one()))
    thread.start()
    time.sleep(0.5)  # admitted and waiting for the provider's first byte
    return thread


def cli_rows(gateway: GatewayProcess, cli: str) -> list[tuple[object, object]]:
    rows = agent_cli.log_rows(gateway.db, f"vk-busy-{cli}", 1, wait=0)
    return [(r["status"], r["error_kind"]) for r in rows if r["requested_model"] != HOLDER]


def busy_then_ok(
    gateway: GatewayProcess, upstream: FakeUpstreamThread, cli: str, holder: threading.Thread, run: Callable[[], Any]
) -> list[tuple[object, object]]:
    """Runs the CLI while the holder holds the budget; once the CLI has been told "busy" (and
    has had time to retry), the holder's answer is let through, it settles, and the CLI's next
    retry must be served. Returns the CLI's requests as (status, error kind)."""
    done: list[Any] = []
    runner = threading.Thread(target=lambda: done.append(run()))
    runner.start()
    deadline = time.monotonic() + 60
    while not any(kind == "POLICY_BUDGET_BUSY" for _, kind in cli_rows(gateway, cli)):
        assert time.monotonic() < deadline and runner.is_alive(), cli_rows(gateway, cli)
        time.sleep(0.2)
    time.sleep(1.5)  # the CLI retries at least once more against the held budget
    upstream.upstream.slow_delay = 0
    holder.join(timeout=30)
    runner.join(timeout=120)
    result = done[0]
    assert result.returncode == 0, result.stdout + result.stderr
    deadline = time.monotonic() + 10
    while not (kinds := cli_rows(gateway, cli)) or kinds[-1][0] != 200:  # logged after the response
        assert time.monotonic() < deadline, kinds
        time.sleep(0.2)
    assert all(status in (200, 429) for status, _ in kinds), kinds  # never a 402
    assert all(kind == "POLICY_BUDGET_BUSY" for status, kind in kinds if status == 429), kinds
    return kinds


def test_claude_code_retries_a_busy_budget(stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path) -> None:
    gateway, upstream = stack
    holder = hold_budget(gateway, upstream, KEYS["claude"])
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "TERM": "dumb",
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_AUTH_TOKEN": KEYS["claude"],
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_LEGACY_MODEL_REMAP": "1",
    }
    argv = [str(agent_cli.installed("claude")), "-p", "say hi", "--model", MODELS["claude"], "--output-format", "json"]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )

    print("claude code:", busy_then_ok(gateway, upstream, "claude", holder, run))


def test_codex_retries_a_busy_budget(stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path) -> None:
    gateway, upstream = stack
    agent_cli.connect("codex", gateway.base_url, KEYS["codex"], tmp_path, "--model", MODELS["codex"])
    holder = hold_budget(gateway, upstream, KEYS["codex"])
    argv = [str(agent_cli.installed("codex")), "exec", "--skip-git-repo-check", "say hi"]

    def run() -> subprocess.CompletedProcess[str]:
        return agent_cli.run(argv, tmp_path, {"SLUICE_API_KEY": KEYS["codex"]}, timeout=120)

    print("codex:", busy_then_ok(gateway, upstream, "codex", holder, run))


def test_gemini_cli_retries_a_busy_budget(stack: tuple[GatewayProcess, FakeUpstreamThread], tmp_path: Path) -> None:
    gateway, upstream = stack
    out = agent_cli.connect("gemini-cli", gateway.base_url, KEYS["gemini"], tmp_path, "--model", MODELS["gemini"])
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    env["GEMINI_CLI_TRUST_WORKSPACE"] = "true"
    holder = hold_budget(gateway, upstream, KEYS["gemini"])

    def run() -> subprocess.CompletedProcess[str]:
        return agent_cli.run([str(agent_cli.installed("gemini")), "-p", "say hi"], tmp_path, env, timeout=120)

    print("gemini cli:", busy_then_ok(gateway, upstream, "gemini", holder, run))
