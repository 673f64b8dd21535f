"""A tiny in-memory provider and an engine around it, with the real Limits on the memory
counters and a SQLite store: the engine's retries, fallbacks and settlement, without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sluice.app import open_store
from sluice.core.context import RequestRecord, new_request_id
from sluice.core.types import Operation, WireFormat
from sluice.engine import Engine, Inbound
from sluice.engine.context import RequestContext
from sluice.governance.config_sync import sync_from_file
from sluice.governance.limits import Limits
from sluice.pricing.table import PriceTable
from sluice.providers.base import ProviderCall, ProviderError, ProviderKey, ProviderReply, error_by_status
from sluice.settings import parse_config
from sluice.storage.backends.memory_counters import MemoryCounters
from sluice.storage.ports import Store
from sluice.storage.records import ProviderGrant, RequestLogEntry, VirtualKey
from sluice.upstream.client import Timeouts

KEY_ID = "vk-unit"


def message(text: str = "hi", input_tokens: int = 10, output_tokens: int = 5) -> ProviderReply:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    return ProviderReply(200, "application/json", body=orjson.dumps(body))


def failure(status: int, headers: dict[str, str] | None = None) -> ProviderReply:
    body = {"type": "error", "error": {"type": "api_error", "message": f"upstream said {status}"}}
    return ProviderReply(status, "application/json", dict(headers or {}), body=orjson.dumps(body))


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def stream_events(text: str = "hello", input_tokens: int = 10, output_tokens: int = 5) -> list[bytes]:
    start = {"type": "message", "id": "msg_1", "role": "assistant", "model": "m", "content": []}
    start["usage"] = {"input_tokens": input_tokens, "output_tokens": 0}
    return [
        sse("message_start", {"type": "message_start", "message": start}),
        sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
        sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
        ),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output_tokens}},
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]


@dataclass(frozen=True)
class Stall:
    """A stream that sends nothing for `seconds`."""

    seconds: float


@dataclass
class Script:
    """What the stub answers, call by call: a reply, chunks to stream (an exception among them
    breaks the stream there), or an exception to raise."""

    steps: list[ProviderReply | list[bytes | BaseException] | BaseException | Stall] = field(default_factory=list)


class StubProvider:
    type = "stub"
    model_in_url = False

    def __init__(self, name: str, *, keys: int = 0) -> None:
        self.name = name
        self.keys = [ProviderKey(f"{name}-k{i}", f"secret-{name}-{i}") for i in range(keys)]
        self.timeouts = Timeouts(first_byte=0.2)
        self.script = Script()
        self.calls: list[ProviderCall] = []

    def speaks(self, wire: WireFormat, operation: Operation, model: str) -> bool:
        return True

    def wire_for(self, model: str, operation: Operation) -> WireFormat | None:
        return WireFormat.ANTHROPIC_MESSAGES

    def serves(self, model: str) -> bool:
        return True

    async def send(self, call: ProviderCall) -> ProviderReply:
        self.calls.append(call)
        step = self.script.steps.pop(0) if self.script.steps else message()
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, Stall):
            return ProviderReply(200, "text/event-stream", chunks=_stalled(step.seconds))
        if isinstance(step, list):
            return ProviderReply(200, "text/event-stream", chunks=_chunks(step))
        return step

    def parse_error(self, reply: ProviderReply, call: ProviderCall) -> ProviderError:
        return error_by_status(self.name, reply, call.key, self.keys)


async def _chunks(steps: list[bytes | BaseException]) -> AsyncIterator[bytes]:
    for step in steps:
        if isinstance(step, BaseException):
            raise step
        yield step


async def _stalled(seconds: float) -> AsyncIterator[bytes]:
    await asyncio.sleep(seconds)
    yield b""


class Recorder:
    def __init__(self) -> None:
        self.entries: list[RequestLogEntry] = []

    def record(self, entry: RequestLogEntry) -> None:
        self.entries.append(entry)


@dataclass
class Rig:
    engine: Engine
    limits: Limits
    store: Store
    recorder: Recorder
    primary: StubProvider
    backup: StubProvider
    key: VirtualKey
    calls: list[str]  # the Limits methods the engine called, in order

    def context(self) -> RequestContext:
        ctx = RequestContext(
            RequestRecord(new_request_id(), WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE, "/v1/messages")
        )
        ctx.key = self.key  # as when the edge authenticated it
        return ctx

    @staticmethod
    def inbound(model: str = "primary/m", stream: bool = False) -> Inbound:
        doc: dict[str, Any] = {"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
        if stream:
            doc["stream"] = True
        return Inbound(WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE, orjson.dumps(doc), doc, {})

    async def spend(self) -> list[tuple[str, int]]:
        """The settled spend in the ledger: (request id, tokens). Settling waits for the ledger."""
        return sorted((r.request_id, r.tokens) for r in await self.store.spend_since(datetime(2000, 1, 1, tzinfo=UTC)))


async def make_rig(tmp_path: Path, *, retries: int = 2, governance: dict[str, Any] | None = None) -> Rig:
    doc: dict[str, Any] = {
        "virtual_keys": [{"id": KEY_ID}],
        "rate_limits": [{"id": "one-at-a-time", "virtual_key_id": KEY_ID, "max_concurrent_requests": 1}],
        "budgets": [{"id": "daily", "virtual_key_id": KEY_ID, "max_limit": 10, "reset_duration": "1d"}],
        "pricing": {"overrides": {"m": {"input_cost_per_mtok": 1, "output_cost_per_mtok": 5}}},
        "routing": {"retries": {"attempts": retries, "backoff_base_s": 0, "backoff_max_s": 0.5}},
        **(governance or {}),
    }
    cfg = parse_config(doc)
    store = open_store(f"sqlite:///{tmp_path / 'engine.db'}")
    await store.migrate()
    await sync_from_file(store, cfg, "test")
    limits = Limits(cfg.governance, MemoryCounters(), store)
    await limits.start()
    calls: list[str] = []
    for name in ("admit", "extend", "settle", "release"):
        real = getattr(limits, name)

        async def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return await _real(*args, **kwargs)

        setattr(limits, name, spy)
    primary, backup = StubProvider("primary", keys=2), StubProvider("backup")
    recorder = Recorder()
    engine = Engine(
        None,  # type: ignore[arg-type]  # the key is authenticated already
        {"primary": primary, "backup": backup},
        PriceTable.bundled(cfg.pricing),
        recorder,  # type: ignore[arg-type]
        limits,
        routing=cfg.routing,
        default_max_tokens=cfg.governance.default_max_tokens,
    )
    key = VirtualKey(
        KEY_ID, KEY_ID, "h", "h", (ProviderGrant("primary"), ProviderGrant("backup")), fallbacks=("backup/m",)
    )
    return Rig(engine, limits, store, recorder, primary, backup, key, calls)
