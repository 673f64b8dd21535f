"""`sluice policy simulate`: what a proposed configuration would have done to the logged traffic."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from sluice.app import open_store
from sluice.settings import SluiceConfig
from sluice.simulation import Report, simulate

_SPAN = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, now: datetime) -> datetime:
    """`7d`, `12h`, `30m`, `2w` before `now`, or an ISO 8601 time (UTC when it names no zone)."""
    match = _SPAN.match(text.strip())
    if match:
        return now - timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a span such as 7d, 12h, 30m nor an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def missing_store(url: str) -> str | None:
    """Why `url` names no store to read, for a SQLite file that does not exist (opening it would
    create an empty one: the simulation writes nothing, not even that)."""
    path = url.split(":///", 1)[1] if url.startswith("sqlite") and ":///" in url else ""
    if path and path != ":memory:" and not path.startswith("file:") and not Path(path).exists():
        return f"no store at {path}: name the live store with --store or --live-config"
    return None


async def run(proposal: SluiceConfig, store_url: str, since: datetime, until: datetime | None, sample: int) -> Report:
    """The store is opened as it is (never migrated, never written): the log must exist."""
    store = open_store(store_url)
    try:
        return await simulate(proposal, store, since, until, sample=sample)
    finally:
        await store.close()


def render(report: Report, as_json: bool, top: int) -> str:
    if as_json:
        return orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode()
    return "\n".join(report.text(top))
