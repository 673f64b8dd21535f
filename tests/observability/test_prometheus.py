"""Against a real Prometheus (Debian's `prometheus` and `promtool`; `make test` installs them):
the alerting rules pass `promtool check rules` and their unit tests, Prometheus scrapes a running
gateway and answers a PromQL query for the traffic this test sent, loads the rules, and every
query of the Grafana dashboard is valid PromQL that Prometheus evaluates."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "sluice-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "sluice-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "sluice-dashboard.json"
KEY = "sk-sluice-prometheus-00000000000000"
KEY_SPENT = "sk-sluice-prometheus-spent-000000000"

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus and promtool are not installed (`apt-get install -y prometheus`; `make test` does it)",
)


@needs_prometheus
def test_promtool_checks_and_unit_tests_the_rules() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "13 rules found" in check.stdout
    tests = subprocess.run(
        ["promtool", "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=RULE_TESTS.parent
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_dashboard_is_the_generator_output() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_dashboard", DASHBOARD.parent / "build_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run python deploy/grafana/build_dashboard.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return dict(json.load(resp))
    except urllib.error.HTTPError as err:
        body = err.read()
        try:
            return dict(json.loads(body))
        except ValueError:  # not the API's JSON: Prometheus is not ready (a 503 "Service Unavailable")
            return {"status": "unavailable", "error": f"HTTP {err.code}: {body[:200]!r}"}


def value(answer: dict[str, Any]) -> float | None:
    """The first sample's value of an instant query's answer; None while there is none."""
    result = answer.get("data", {}).get("result") or []
    return float(result[0]["value"][1]) if result else None


def answers_once_scraped(base: str, exprs: list[str], expected: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Every query's answer, once each has a series and the `expected` ones have their value: polled
    until then (a generous deadline, for a loaded machine), never a fixed wait. Prometheus listens
    before it is ready (its API answers 503 in plain text until then), scrapes once a second, and
    a rate needs two scrapes."""
    answers: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            answers = {q: query(base, q) for q in exprs}
        except OSError:  # not listening yet
            answers = {}
        if (
            answers
            and all(value(a) is not None for a in answers.values())
            and all(value(answers[q]) == v for q, v in expected.items())
        ):
            break
        time.sleep(0.5)
    return answers


@pytest.fixture
def prometheus_of(tmp_path: Path) -> Iterator[Any]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: [{json.dumps(str(RULES))}]\n"
            "scrape_configs:\n"
            f"  - job_name: sluice\n    static_configs: [{{targets: [{json.dumps(target)}]}}]\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


# Dashboard queries that stay empty after this test's traffic, and why (each still has to parse,
# and to name only metrics the gateway exports).
QUIET = {
    "sluice_streams_in_flight": "no stream is open at the moment Prometheus scrapes",
    "sluice_fallbacks_total": "no fallback model is configured",
    "sluice_circuit_breaker_state": "no breaker opened (one 529 does not open it)",
    "sluice_mcp_": "no MCP traffic",
}
METRIC = re.compile(r"\bsluice_[a-z0-9_]+")


def exported_names(exposition: str) -> set[str]:
    """Every series name the gateway's /metrics can produce: its families (a family with no
    sample yet still has its TYPE line) with their types' suffixes, and the samples' names."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}.get(kind, ())
            names.update(name + suffix for suffix in suffixes)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    return [
        (
            panel["title"],
            target["expr"].replace("$__rate_interval", "1m").replace("$team", ".*").replace("$provider", ".*"),
        )
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel.get("targets", [])
    ]


@needs_prometheus
def test_prometheus_scrapes_the_gateway(tmp_path: Path, prometheus_of: Any) -> None:
    cfg = {
        "providers": {"anthropic": {"base_url": "", "keys": [{"name": "primary", "value": "sk-ant-x"}]}},
        "virtual_keys": [
            {
                "id": "vk-p",
                "value": KEY,
                "team_id": "team-p",
                "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}],
            },
            {
                "id": "vk-q",
                "value": KEY_SPENT,
                "team_id": "team-q",
                "provider_configs": [{"provider": "anthropic", "allowed_models": ["claude-haiku-4-5"]}],
            },
        ],
        "budgets": [
            {"id": "team-p-daily", "team_id": "team-p", "max_limit": 10, "reset_duration": "1d"},
            {"id": "team-q-daily", "team_id": "team-q", "max_limit": 1e-9, "reset_duration": "1d"},
        ],
        "routing": {"retries": {"attempts": 2, "backoff_base_s": 0.01, "backoff_max_s": 0.02}},
        "audit": {
            "hmac_key": "prometheus-test-audit-key-0123456789",
            "exporters": [{"name": "siem", "type": "webhook", "url": "http://127.0.0.1:1/down", "secret": "s"}],
        },
    }
    with FakeUpstreamThread() as upstream:
        cfg["providers"]["anthropic"]["base_url"] = upstream.base_url  # type: ignore[index]
        with GatewayThread(cfg, tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            ask = {"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "p"}]}
            for _ in range(6):
                client.messages.create(**ask)  # type: ignore[call-overload]
            upstream.upstream.fail_next(529)  # an upstream error, retried
            client.messages.create(**ask)  # type: ignore[call-overload]
            with client.messages.stream(**ask) as stream:  # type: ignore[arg-type]
                stream.until_done()
            with pytest.raises(anthropic.PermissionDeniedError):
                client.messages.create(
                    model="claude-opus-4-1", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                )
            spent = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY_SPENT, max_retries=0)
            with pytest.raises(anthropic.APIStatusError):  # the budget refuses (at once or after one)
                for _ in range(3):
                    spent.messages.create(**ask)  # type: ignore[call-overload]
            with urllib.request.urlopen(f"{gateway.base_url}/metrics", timeout=10) as resp:
                exported = exported_names(resp.read().decode())
            base = prometheus_of(gateway.base_url.removeprefix("http://"))
            expr = 'sum(sluice_requests_total{decision="allow",team="team-p",model="claude-haiku-4-5"})'
            queries = dashboard_queries()
            expected = [(title, q) for title, q in queries if not any(m in q for m in QUIET)]
            denied = 'sum(sluice_requests_total{decision="deny",status="403"})'
            limit = 'sluice_budget_limit_dollars{budget="team-p-daily"}'
            counted = {expr: 8.0, denied: 1.0, limit: 10.0}
            answers = answers_once_scraped(base, [*counted, *(q for _, q in expected)], counted)
            answer = answers[expr]
            assert answer["status"] == "success", answer
            assert value(answer) == 8
            assert value(answers[denied]) == 1
            assert value(answers[limit]) == 10
            with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as resp:
                groups = json.load(resp)["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert len(rules) == 13 and all(r["health"] != "err" for r in rules), rules
            for title, promql in queries:
                named = set(METRIC.findall(promql))
                assert named and named <= exported, (title, promql, named - exported)
                result = query(base, promql)
                assert result["status"] == "success", (title, promql, result)
            empty = [(title, q) for title, q in expected if not answers[q]["data"]["result"]]
            assert not empty, f"dashboard queries with no series after the traffic: {empty}"
