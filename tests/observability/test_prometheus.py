"""Against a real Prometheus (Debian's `prometheus` and `promtool`; `make test` installs them):
the alerting rules pass `promtool check rules` and their unit tests, Prometheus scrapes a running
gateway and answers a PromQL query for the traffic this test sent, loads the rules, and every
query of the Grafana dashboard is valid PromQL that Prometheus evaluates."""

from __future__ import annotations

import json
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
        return dict(json.load(err))


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
            }
        ],
        "budgets": [{"id": "team-p-daily", "team_id": "team-p", "max_limit": 10, "reset_duration": "1d"}],
    }
    with FakeUpstreamThread() as upstream:
        cfg["providers"]["anthropic"]["base_url"] = upstream.base_url  # type: ignore[index]
        with GatewayThread(cfg, tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            for _ in range(7):
                client.messages.create(
                    model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "p"}]
                )
            with pytest.raises(anthropic.PermissionDeniedError):
                client.messages.create(
                    model="claude-opus-4-1", max_tokens=5, messages=[{"role": "user", "content": "x"}]
                )
            base = prometheus_of(gateway.base_url.removeprefix("http://"))
            expr = 'sum(sluice_requests_total{decision="allow",team="team-p",model="claude-haiku-4-5"})'
            answer: dict[str, Any] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    answer = query(base, expr)
                except OSError:  # not listening yet
                    answer = {}
                if answer.get("data", {}).get("result"):
                    break
                time.sleep(0.5)
            assert answer["status"] == "success", answer
            assert float(answer["data"]["result"][0]["value"][1]) == 7
            denied = query(base, 'sum(sluice_requests_total{decision="deny",status="403"})')
            assert float(denied["data"]["result"][0]["value"][1]) == 1
            limit = query(base, 'sluice_budget_limit_dollars{budget="team-p-daily"}')
            assert float(limit["data"]["result"][0]["value"][1]) == 10
            with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as resp:
                groups = json.load(resp)["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            assert len(rules) == 13 and all(r["health"] != "err" for r in rules), rules
            for panel in json.loads(DASHBOARD.read_text())["panels"]:
                for target in panel.get("targets", []):
                    promql = (
                        target["expr"]
                        .replace("$__rate_interval", "1m")
                        .replace("$team", ".*")
                        .replace("$provider", ".*")
                    )
                    result = query(base, promql)
                    assert result["status"] == "success", (panel["title"], promql, result)
