"""Policy simulation checked against the live path: the traffic a gateway logged is replayed under
a proposal that halves a budget, then the same traffic is sent to a gateway running that
proposal; the requests the simulation says are refused are exactly the ones the live gateway
refuses.

The live path reserves a request's worst case (its body size in input tokens, its `max_tokens`
in output) and the log keeps only what it cost, which the replay reserves instead (see
docs/policy-simulation.md). So the traffic is made for the two to coincide: input tokens are
free and every request's `max_tokens` is the output the fake provider answers with. What is
compared is then everything else: the rules, their windows, the order, and that a refused
request is not charged.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sluice.cli.main import app
from sluice.simulation import parse_proposal, simulate
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

MODEL = "claude-sonnet-4-5-20250929"
KEY = "sk-sluice-simulation-0000000000000"
PICO_PER_TOKEN = 10**10  # $0.01 per output token


def texts() -> list[str]:
    return [f"request {i} " + "x" * (11 * ((i * 7) % 13) + 5) for i in range(14)]


def output_tokens(text: str) -> int:
    # The fake answers "echo: " + the prompt (cut at 200 characters), a token per 4 characters.
    return max(1, len("echo: " + text[:200]) // 4)


def gateway_config(upstream: FakeUpstreamThread, budget_usd: float) -> dict[str, Any]:
    return {
        "providers": {"anthropic": {"base_url": upstream.base_url, "keys": [{"name": "a", "value": "sk-ant-x"}]}},
        "pricing": {"overrides": {MODEL: {"input_cost_per_mtok": 0, "output_cost_per_mtok": 10_000}}},
        "teams": [{"id": "team-sim"}],
        "virtual_keys": [
            {"id": "vk-sim", "value": KEY, "team_id": "team-sim", "provider_configs": [{"provider": "anthropic"}]}
        ],
        "budgets": [
            {
                "id": "b-sim",
                "virtual_key_id": "vk-sim",
                "max_limit": budget_usd,
                "reset_duration": "1d",
                "calendar_aligned": True,
            }
        ],
    }


def send_all(gw: GatewayThread, sessions: list[str | None] | None = None) -> list[int]:
    """Every text in turn; the i-th in agent session `sessions[i]` (None: naming no session)."""
    statuses = []
    for i, text in enumerate(texts()):
        body = {"model": MODEL, "max_tokens": output_tokens(text), "messages": [{"role": "user", "content": text}]}
        headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
        session = sessions[i] if sessions else None
        if session is not None:
            headers["x-session-id"] = session
        request = urllib.request.Request(gw.base_url + "/v1/messages", data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                statuses.append(reply.status)
        except urllib.error.HTTPError as err:
            statuses.append(err.code)
    return statuses


def logged(gw: GatewayThread) -> list[dict[str, Any]]:
    return sorted(gw.request_log(), key=lambda r: (r["ts"], r["request_id"]))


@pytest.fixture(scope="module")
def upstream() -> Any:
    with FakeUpstreamThread() as fake:
        yield fake


def test_halving_a_budget_refuses_exactly_what_the_live_path_refuses(
    upstream: FakeUpstreamThread, tmp_path: Path
) -> None:
    total_usd = sum(output_tokens(t) for t in texts()) * PICO_PER_TOKEN / 10**12
    started = datetime.now(UTC) - timedelta(minutes=1)
    (tmp_path / "live").mkdir()
    (tmp_path / "proposed").mkdir()
    # The traffic as it happened: the budget covers all of it.
    with GatewayThread(gateway_config(upstream, total_usd), tmp_path / "live") as live:
        assert send_all(live) == [200] * len(texts())
        rows = logged(live)
        assert sum(r["cost_pico"] for r in rows) == round(total_usd * 10**12)
        proposed = gateway_config(upstream, total_usd / 2)
        report = live.call(simulate(parse_proposal(copy.deepcopy(proposed)), live.services.store, started, sample=None))
        store_url = live.config.store.url
    simulated = [rows.index(next(r for r in rows if r["request_id"] == rid)) for rid in report.examples["refused"]]
    assert simulated, "half the budget must refuse some of the traffic"
    assert report.total.refused_by == {"b-sim": len(simulated)}
    assert report.developers["vk-sim"].refused == report.teams["team-sim"].refused == len(simulated)

    # The same traffic through a gateway running the proposal.
    with GatewayThread(proposed, tmp_path / "proposed") as gw:
        statuses = send_all(gw)
        replayed = logged(gw)
    refused_live = [i for i, status in enumerate(statuses) if status != 200]
    assert {statuses[i] for i in refused_live} == {402}
    assert refused_live == sorted(simulated)
    assert [r["decision"] for r in replayed].count("deny") == len(simulated)
    # What the proposal would have cost is what the gateway running it charged.
    assert report.total.cost_after_pico == sum(r["cost_pico"] for r in replayed)

    # The CLI says the same from the store file.
    proposal_file = tmp_path / "proposed.json"
    proposal_file.write_text(json.dumps(proposed))
    cli_window = ["--since", started.isoformat(), "--json", "--examples", "100"]
    result = CliRunner().invoke(
        app,
        ["policy", "simulate", "--config", str(proposal_file), "--store", store_url, *cli_window],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["total"]["refused"] == len(simulated)
    assert out["examples"]["refused"] == report.examples["refused"]


# Three agent sessions interleaved, and every fourth request naming none.
SESSIONS: list[str | None] = [None if i % 4 == 3 else f"session-{i % 4}" for i in range(len(texts()))]


def test_session_caps_refuse_exactly_what_the_live_path_refuses(upstream: FakeUpstreamThread, tmp_path: Path) -> None:
    # A proposal adding a $0.50 cap per session (50 output tokens), refusing requests that name no
    # session: each session is cut where its spend would pass the cap (a refused request is not
    # charged, so a later, smaller one of the same session may still fit), and every request
    # without a session is refused by the cap.
    total_usd = sum(output_tokens(t) for t in texts()) * PICO_PER_TOKEN / 10**12
    started = datetime.now(UTC) - timedelta(minutes=1)
    (tmp_path / "live").mkdir()
    (tmp_path / "proposed").mkdir()
    with GatewayThread(gateway_config(upstream, total_usd), tmp_path / "live") as live:
        assert send_all(live, SESSIONS) == [200] * len(texts())
        rows = logged(live)
        assert [r["session_id"] for r in rows] == SESSIONS
        proposed = gateway_config(upstream, total_usd)
        proposed["session_caps"] = [{"id": "cap-sim", "virtual_key_id": "vk-sim", "max_cost": 0.5}]
        report = live.call(simulate(parse_proposal(copy.deepcopy(proposed)), live.services.store, started, sample=None))
    position = {r["request_id"]: i for i, r in enumerate(rows)}
    simulated = sorted(position[rid] for rid in report.examples["refused"])
    assert report.total.refused_by == {"cap-sim": len(simulated)}
    with GatewayThread(proposed, tmp_path / "proposed") as gw:
        statuses = send_all(gw, SESSIONS)
        replayed = logged(gw)
    refused_live = [i for i, status in enumerate(statuses) if status != 200]
    no_session = [i for i, s in enumerate(SESSIONS) if s is None]
    assert set(no_session) < set(refused_live)  # the cap refuses them (400), and some in sessions (402)
    assert {statuses[i] for i in refused_live} == {400, 402}
    assert simulated == refused_live
    assert report.total.cost_after_pico == sum(r["cost_pico"] for r in replayed)


def test_the_cli_refuses_an_invalid_proposal_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets:\n  - id: b\n    virtual_key_id: vk\n    max_limit: lots\n    reset_duration: 1d\n")
    result = CliRunner().invoke(app, ["policy", "simulate", "--config", str(bad), "--store", "sqlite:///x.db"])
    assert result.exit_code == 2
    assert "budgets.0.max_limit" in result.output
    good = tmp_path / "good.yaml"
    good.write_text("teams: [{id: t}]\n")
    result = CliRunner().invoke(app, ["policy", "simulate", "--config", str(good), "--since", "last tuesday"])
    assert result.exit_code == 2
    assert "neither a span" in result.output
    missing = tmp_path / "missing.db"
    result = CliRunner().invoke(app, ["policy", "simulate", "--config", str(good), "--store", f"sqlite:///{missing}"])
    assert result.exit_code == 2
    assert "no store" in result.output
    assert not missing.exists()  # read-only: not even an empty database is made
