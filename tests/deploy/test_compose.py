"""deploy/compose.yaml: valid for Compose (the compose-spec schema, and `docker compose config` /
`docker-compose config` where one is installed: neither needs a daemon), and the topology
docs/deployment.md describes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfile import ROOT

COMPOSE = ROOT / "deploy" / "compose.yaml"
SECRETS = {"POSTGRES_PASSWORD": "pg-pw", "REDIS_PASSWORD": "redis-pw", "SLUICE_AUDIT_HMAC_KEY": "hk"}


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return doc


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(str(ROOT / ".venv" / "bin" / name))
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def test_valid_against_the_compose_spec_schema() -> None:
    checker = _tool("check-jsonschema")  # ships the compose-spec schema: no network needed
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_cli() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip("neither `docker compose` nor docker-compose is installed")


def test_compose_config_renders_and_refuses_missing_secrets(tmp_path: Path) -> None:
    cli = _compose_cli()
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    base = [*cli, "-f", str(COMPOSE), "--env-file", str(env_file)]
    rendered = subprocess.run([*base, "--profile", "monitoring", "config"], capture_output=True, text=True)
    assert rendered.returncode == 0, rendered.stderr
    doc = yaml.safe_load(rendered.stdout)
    assert set(doc["services"]) == {"proxy", "gateway", "postgres", "redis", "prometheus", "grafana"}
    url = doc["services"]["gateway"]["environment"]["SLUICE_STORE_URL"]
    assert url == "postgresql+asyncpg://sluice:pg-pw@postgres:5432/sluice"
    env_file.write_text("POSTGRES_PASSWORD=x\n")  # no audit key, no Redis password
    refused = subprocess.run([*base, "config"], capture_output=True, text=True)
    assert refused.returncode != 0 and "SLUICE_AUDIT_HMAC_KEY" in refused.stderr + refused.stdout


def test_two_gateway_replicas_behind_the_one_published_port() -> None:
    services = _doc()["services"]
    assert services["gateway"]["deploy"]["replicas"] == 2
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"proxy", "grafana"}  # never the gateway, the store or Redis directly
    assert services["proxy"]["ports"] == ["${SLUICE_PUBLISH:-127.0.0.1:8080}:8080"]
    caddyfile = (ROOT / "deploy" / "compose" / "Caddyfile").read_text()
    assert "name gateway" in caddyfile and "health_uri /readyz" in caddyfile and "flush_interval -1" in caddyfile


def test_store_redis_and_prometheus_have_no_route_out() -> None:
    doc = _doc()
    assert doc["networks"]["backend"] == {"internal": True}
    assert doc["networks"]["edge"] == {}
    nets = {name: set(svc["networks"]) for name, svc in doc["services"].items()}
    assert nets["postgres"] == nets["redis"] == nets["prometheus"] == {"backend"}
    assert nets["gateway"] == {"edge", "backend"}


def test_gateway_hardening_and_drain_time() -> None:
    gateway = _doc()["services"]["gateway"]
    assert gateway["read_only"] is True and gateway["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in gateway["security_opt"]
    assert int(gateway["stop_grace_period"].rstrip("s")) >= 30
    assert "volumes" not in gateway  # each replica keeps its own journal and spill (anonymous volume)
    assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_gateway_environment_covers_every_required_setting() -> None:
    env = _doc()["services"]["gateway"]["environment"]
    for name in ("SLUICE_STORE_URL", "SLUICE_COUNTERS", "SLUICE_REDIS_URL", "SLUICE_AUDIT_HMAC_KEY"):
        assert name in env
    assert env["SLUICE_COUNTERS"] == "redis"  # limits exact across the two replicas


def test_caddyfile_is_valid_for_caddy() -> None:
    caddy = _tool("caddy")
    caddyfile = ROOT / "deploy" / "compose" / "Caddyfile"
    result = subprocess.run([caddy, "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_prometheus_scrapes_each_replica() -> None:
    prom = yaml.safe_load((ROOT / "deploy" / "compose" / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["dns_sd_configs"] == [{"names": ["gateway"], "type": "A", "port": 8080, "refresh_interval": "15s"}]
