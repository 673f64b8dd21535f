"""Each audit exporter against a local HTTP sink that checks the product's documented request
format; a sink that is down for a while receives every event exactly once when it returns."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from sluice.app import open_store
from sluice.audit.log import AuditLog
from sluice.audit.outbox import ExportRunner, build_exporter
from sluice.settings import AuditExportConfig, AuditExporterConfig, parse_config
from sluice.storage.ports import Store
from sluice.upstream.client import UpstreamClient

AUDIT_KEY = "export-test-audit-key"


class Sink:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_next = 0
        self.es_errors = False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=503, text="down")
        self.requests.append((request.path, {k.lower(): v for k, v in request.headers.items()}, body))
        if request.path == "/_bulk":
            return web.json_response({"took": 1, "errors": self.es_errors, "items": []})
        return web.json_response({"ok": True})


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, str]]:
    s = Sink()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", s.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield s, f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    st = open_store(f"sqlite:///{tmp_path / 'export.db'}")
    await st.migrate()
    log = AuditLog(parse_config({"audit": {"hmac_key": AUDIT_KEY}}).audit, st)
    for i in range(7):
        await log.append("request", f"vk-{i}", {"n": i, "model": "claude-haiku-4-5"})
    yield st
    await st.close()


async def drain(runner: ExportRunner) -> None:
    for _ in range(50):
        if await runner.backlog() == 0:
            return
        await runner.deliver_once()


def runner_for(store: Store, url: str, max_failures: int = 20, **cfg: Any) -> ExportRunner:
    exporter = AuditExporterConfig(name=cfg.pop("name", "sink"), url=url, batch_size=3, **cfg)
    return ExportRunner(
        build_exporter(exporter),
        3,
        store,
        UpstreamClient(),
        AuditExportConfig(backoff_max_s=0.01, max_failures=max_failures),
    )


async def test_webhook_body_is_signed(sink: tuple[Sink, str], store: Store) -> None:
    s, url = sink
    await drain(runner_for(store, url + "/hook", type="webhook", secret="whsec"))
    assert [len(orjson.loads(b)) for _, _, b in s.requests] == [3, 3, 1]
    path, headers, body = s.requests[0]
    expected = hmac.new(b"whsec", body, hashlib.sha256).hexdigest()
    assert path == "/hook" and headers["x-sluice-signature"] == f"sha256={expected}"
    first = orjson.loads(body)[0]
    assert first["seq"] == 1 and first["mac"] and first["event_id"].startswith("sluice-audit-1-")


async def test_splunk_hec_format(sink: tuple[Sink, str], store: Store) -> None:
    s, url = sink
    await drain(runner_for(store, url, type="splunk_hec", token="hec-token", index="sec"))
    path, headers, body = s.requests[0]
    assert path == "/services/collector/event" and headers["authorization"] == "Splunk hec-token"
    events = [orjson.loads(line) for line in body.splitlines()]
    assert {"time", "host", "source", "sourcetype", "index", "event"} <= set(events[0])
    assert events[0]["sourcetype"] == "sluice:audit" and events[0]["event"]["seq"] == 1


async def test_datadog_format(sink: tuple[Sink, str], store: Store) -> None:
    s, url = sink
    await drain(runner_for(store, url, type="datadog", api_key="dd-key", tags="env:test"))
    path, headers, body = s.requests[0]
    assert path == "/api/v2/logs" and headers["dd-api-key"] == "dd-key"
    entry = orjson.loads(body)[0]
    assert entry["ddsource"] == "sluice" and entry["ddtags"] == "env:test"
    assert orjson.loads(entry["message"])["seq"] == 1


async def test_elasticsearch_bulk_format_and_item_errors(sink: tuple[Sink, str], store: Store) -> None:
    s, url = sink
    s.es_errors = True  # a 200 whose items failed is not a delivery
    runner = runner_for(store, url, type="elasticsearch", index="sluice-audit", api_key="es-key")
    assert await runner.deliver_once() == 0
    s.es_errors = False
    await drain(runner)
    path, headers, body = s.requests[-3]
    assert path == "/_bulk" and headers["content-type"] == "application/x-ndjson"
    assert headers["authorization"] == "ApiKey es-key"
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert lines[0] == {"index": {"_index": "sluice-audit", "_id": lines[1]["event_id"]}}
    assert body.endswith(b"\n")


async def test_otlp_logs_format(sink: tuple[Sink, str], store: Store) -> None:
    s, url = sink
    await drain(runner_for(store, url, type="otlp"))
    path, headers, body = s.requests[0]
    assert path == "/v1/logs" and headers["content-type"] == "application/json"
    logs = orjson.loads(body)["resourceLogs"][0]
    assert logs["resource"]["attributes"][0] == {"key": "service.name", "value": {"stringValue": "sluice"}}
    record = logs["scopeLogs"][0]["logRecords"][0]
    assert record["timeUnixNano"].isdigit() and orjson.loads(record["body"]["stringValue"])["seq"] == 1


async def test_a_sink_that_was_down_gets_every_event_exactly_once(sink: tuple[Sink, str], store: Store) -> None:
    s, url = sink
    s.fail_next = 4
    runner = runner_for(store, url, type="webhook", secret="x")
    await drain(runner)
    ids = [e["event_id"] for _, _, b in s.requests for e in orjson.loads(b)]
    assert len(ids) == 7 and len(set(ids)) == 7
    # A restart resumes from the stored position: nothing is sent again.
    again = runner_for(store, url, type="webhook", secret="x")
    assert await again.deliver_once() == 0 and len(s.requests) == 3


async def test_poison_batch_becomes_a_dead_letter(sink: tuple[Sink, str], store: Store) -> None:
    s, url = sink
    s.fail_next = 1000
    runner = runner_for(store, url, type="webhook", secret="x", max_failures=3)
    for _ in range(3):
        await runner.deliver_once()
    assert await store.export_position("sink") == (3, 0)  # moved past records 1-3
    s.fail_next = 0
    await drain(runner)
    assert [orjson.loads(b)[0]["seq"] for _, _, b in s.requests] == [4, 7]
