"""Budget changes by CLI and by config-file reload apply to a running gateway on the next request
and are recorded as configuration events (who, when, before, after)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from tests.e2e.gateway_process import GatewayProcess

KEY = "sk-sluice-live-00000000000000000"
CONFIG = {
    "virtual_keys": [{"id": "vk-live", "value": KEY, "provider_configs": [{"provider": "fake"}]}],
    "pricing": {"echo": {"input_cost_per_mtok": 1000, "output_cost_per_mtok": 1000}},
    "budgets": [{"id": "budget-live", "virtual_key_id": "vk-live", "max_limit": 0.000001, "reset_duration": "1d"}],
}


def status_of(gw: GatewayProcess) -> int:
    body = json.dumps({"model": "fake/echo", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]})
    req = urllib.request.Request(
        gw.base_url + "/v1/messages",
        data=body.encode(),
        method="POST",
        headers={"x-api-key": KEY, "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def wait_for(gw: GatewayProcess, status: int) -> None:
    deadline = time.monotonic() + 5
    while status_of(gw) != status:
        assert time.monotonic() < deadline, f"gateway never answered {status}"
        time.sleep(0.1)


def cli(gw: GatewayProcess, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "sluice.cli.main", *args, "--store", f"sqlite:///{gw.db}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout


def test_cli_and_file_changes_apply_live_and_are_recorded(tmp_path: Path) -> None:
    with GatewayProcess(CONFIG, tmp_path) as gw:
        assert status_of(gw) == 402
        out = cli(gw, "budgets", "set", "--id", "budget-live", "--key", "vk-live", "--max-limit", "5", "--reset", "1d")
        assert out.strip() == "updated budget budget-live"
        wait_for(gw, 200)
        listing = cli(gw, "budgets", "list")
        assert "budget-live" in listing and "$5" in listing

        # The operator edits the file back to a tiny limit and sends SIGHUP.
        doc = yaml.safe_load(gw.config_path.read_text())
        doc["budgets"][0]["max_limit"] = 0.000002
        gw.config_path.write_text(yaml.safe_dump(doc))
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        wait_for(gw, 402)

        events = [json.loads(line) for line in cli(gw, "config", "events").splitlines()]
        budget_events = [e for e in events if e["id"] == "budget-live"]
        assert [e["action"] for e in budget_events] == ["create", "update", "update"]
        created, by_cli, by_file = budget_events
        assert created["actor"].startswith("file:") and created["before"] is None
        assert by_cli["actor"].startswith("cli:")
        assert by_cli["before"]["max_limit"] == "0.000001" and by_cli["after"]["max_limit"] == "5"
        assert by_file["actor"] == f"file:{gw.config_path}"
        assert by_file["before"]["max_limit"] == "5" and by_file["after"]["max_limit"] == "0.000002"
