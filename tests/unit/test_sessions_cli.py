"""`sluice sessions list | show | spend` over a store whose ledger the request-log writer filled."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from sluice.app import open_store
from sluice.cli.main import app
from sluice.sessions.ledger import ledger_id
from sluice.storage.records import RequestLogEntry

NOW = datetime.now(UTC).replace(microsecond=0)


def entry(n: int, key: str, session: str, repo: str | None, branch: str | None, cost: int) -> RequestLogEntry:
    return RequestLogEntry(
        request_id=f"req-{n}",
        ts=NOW - timedelta(minutes=10 - n),
        path="/v1/messages",
        surface="anthropic_messages",
        status=200,
        decision="allow",
        virtual_key_id=key,
        team_id="team-a",
        client="claude-cli/2.1.197 (external, sdk-cli)",
        session_id=session,
        model="claude-sonnet-4-6",
        input_tokens=100,
        output_tokens=20,
        cost_pico=cost,
        repo=repo,
        branch=branch,
        mcp_tools=("fs__read_file",) if n == 1 else (),
    )


def seeded(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"

    async def seed() -> None:
        store = open_store(url)
        await store.migrate()
        await store.insert_requests(
            [
                entry(1, "vk-a", "s-1", "acme/api", "main", 2 * 10**12),
                entry(2, "vk-a", "s-1", "acme/api", "main", 10**12),
                entry(3, "vk-b", "s-2", "acme/web", "feat", 5 * 10**11),
                entry(4, "vk-b", "s-1", None, None, 10**11),  # another key naming the same session id
            ]
        )
        await store.close()

    asyncio.run(seed())
    return url


def test_list_show_and_spend(tmp_path: Path) -> None:
    url = seeded(tmp_path)
    runner = CliRunner()
    listed = runner.invoke(app, ["sessions", "list", "--store", url])
    assert listed.exit_code == 0, listed.output
    assert ledger_id("vk-a", "s-1") in listed.output and "acme/api/main" in listed.output
    assert "$3.0000" in listed.output and "fs__read_file" in listed.output

    as_csv = runner.invoke(app, ["sessions", "list", "--store", url, "--csv", "--repo", "acme/web"])
    [row] = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert (row["session_id"], row["branch"], row["cost_usd"]) == ("s-2", "feat", "0.5")

    shown = runner.invoke(app, ["sessions", "show", ledger_id("vk-a", "s-1"), "--store", url])
    assert shown.exit_code == 0, shown.output
    assert "req-1" in shown.output and "req-2" in shown.output and "req-4" not in shown.output
    # By the client's session id: two keys sent "s-1", so it asks for the ledger id.
    ambiguous = runner.invoke(app, ["sessions", "show", "s-1", "--store", url])
    assert ambiguous.exit_code == 1 and "2 sessions" in ambiguous.output
    assert runner.invoke(app, ["sessions", "show", "s-2", "--store", url]).exit_code == 0
    assert runner.invoke(app, ["sessions", "show", "nope", "--store", url]).exit_code == 1

    spend = runner.invoke(app, ["sessions", "spend", "--store", url, "--csv"])
    rows = list(csv.reader(io.StringIO(spend.output)))
    assert rows[0] == ["repo", "branch", "cost_usd", "tokens", "requests", "sessions"]
    assert rows[1] == ["acme/api", "main", "3", "240", "2", "1"]
    assert runner.invoke(app, ["sessions", "spend", "--store", url, "--by", "nope"]).exit_code == 2
    assert "acme/web" in runner.invoke(app, ["sessions", "spend", "--store", url, "--by", "repo"]).output
