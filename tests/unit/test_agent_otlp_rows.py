"""Which agent metric points are stored, and as what: the recorded Codex and Gemini CLI exports
(tests/fixtures/agent_telemetry) through sluice.gateway_signin.otlp."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from sluice.gateway_signin import otlp
from sluice.storage.grants import AgentMetric
from sluice.storage.records import VirtualKey

FIXTURES = Path(__file__).parent.parent / "fixtures" / "agent_telemetry"
KEY = VirtualKey(id="vk-ana", name="", key_hash="h", key_hint="sk-", user_id="u-ana")


def recorded(name: str) -> ExportMetricsServiceRequest:
    doc = json.loads((FIXTURES / f"{name}.json").read_text())
    [export] = [e for e in doc["exports"] if e["path"] == "/v1/metrics"]
    message = otlp.parse("metrics", base64.b64decode(export["body_b64"]), export["content_type"])
    assert isinstance(message, ExportMetricsServiceRequest)
    return message


def test_codex_tokens_are_its_input_and_output_only() -> None:
    rows = otlp.metric_rows(recorded("codex"), KEY)
    tokens = {r.attributes["token_type"]: r.value for r in rows if r.metric == "codex.turn.token_usage"}
    # The histogram's sum per type; cached_input, reasoning_output and total are parts of these two.
    assert tokens == {"input": 9518.0, "output": 3.0}
    assert {r.service for r in rows} == {"codex_exec"}
    assert "codex.api_request.duration_ms" not in {r.metric for r in rows}  # other histograms: not kept


def test_gemini_tokens_leave_the_cached_part_out() -> None:
    rows = otlp.metric_rows(recorded("gemini_cli"), KEY)
    types = {r.attributes["type"] for r in rows if r.metric == "gemini_cli.token.usage"}
    assert types == {"input", "output", "thought", "tool"}


def test_a_cumulative_series_is_stored_as_what_it_added() -> None:
    """Gemini CLI's default temporality: the same counter again, higher, adds only the difference."""
    export = recorded("gemini_cli")
    running = otlp.Cumulative()
    first = otlp.metric_rows(export, KEY, running)
    for resource in export.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "gemini_cli.token.usage":
                    for point in metric.sum.data_points:
                        point.as_int += 100
    again = otlp.metric_rows(export, KEY, running)

    def total(rows: list[AgentMetric]) -> float:
        return sum(r.value for r in rows if r.metric == "gemini_cli.token.usage")

    assert total(first) == 7798 and total(again) == 400  # 4 types, 100 each
    assert total(otlp.metric_rows(export, KEY)) == 7798 + 400  # without the tracker: as sent
    other = VirtualKey(id="vk-bo", name="", key_hash="h", key_hint="sk-", user_id="u-bo")
    assert total(otlp.metric_rows(export, other, running)) == 7798 + 400  # another key: its own series


def test_the_clients_own_identity_does_not_decide_whose_points_they_are() -> None:
    export = recorded("gemini_cli")
    forged = KeyValue(key="user.id", value=AnyValue(string_value="u-ceo"))
    export.resource_metrics[0].resource.attributes.append(forged)
    export.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].attributes.append(forged)
    rows = otlp.metric_rows(export, KEY)
    assert {(r.user_id, r.virtual_key_id) for r in rows} == {("u-ana", "vk-ana")}


def test_one_key_flooding_series_forgets_only_its_own() -> None:
    running = otlp.Cumulative(per_key=3)
    assert running.added("vk-bo", ("s",), 10) == 10
    for n in range(10):
        running.added("vk-ana", (f"flood-{n}",), 1)
    assert running.added("vk-bo", ("s",), 25) == 15  # still remembered: 25 - 10
    assert running.added("vk-ana", ("flood-0",), 5) == 5  # forgotten: counts whole
