"""The image's own steps, run outside a container: the Dockerfile's build stage is executed as
written (WORKDIR, COPY, ENV, RUN) with its absolute paths moved under a temp dir, into fresh
virtualenvs from the hash-locked wheels; then the runtime stage's ENTRYPOINT + CMD start the
gateway on the bundled config, `/readyz` must answer, the HEALTHCHECK command must pass, and
SIGTERM must stop it. So a lock, a COPY or a RUN line that would break the image breaks here,
on machines where no container builder runs.

Slow (a virtualenv of every locked wheel): about a minute with pip's cache warm."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.dockerfile import ROOT, Stage, stages
from tests.support import free_port

pytestmark = pytest.mark.slow

_ABSOLUTE = re.compile(r"(?<![\w.])/(opt/sluice|opt/build|dist|src|etc/sluice|var/lib/sluice)\b")


def _move(text: str, root: Path) -> str:
    return _ABSOLUTE.sub(lambda m: f"{root}/{m.group(1)}", text)


def _copy(stage_arg: str, workdir: Path, root: Path) -> None:
    *sources, dest = stage_arg.split()
    target = Path(_move(dest, root)) if dest.startswith("/") else workdir / dest
    for source in sources:
        src = ROOT / source.rstrip("/")
        if src.is_dir():
            shutil.copytree(src, target / src.name if dest.endswith("/") else target, dirs_exist_ok=True)
        else:
            out = target / src.name if dest.endswith("/") or len(sources) > 1 else target
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(_move(src.read_text(), root))  # the bundled config names /var/lib/sluice


def _execute(stage: Stage, root: Path, env: dict[str, str]) -> Path:
    workdir = root
    for instruction, arg in stage.steps:
        if instruction == "WORKDIR":
            workdir = Path(_move(arg, root))
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY" and not arg.startswith("--from"):
            _copy(arg, workdir, root)
        elif instruction == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", arg):
                env[name] = _move(value.replace("$PATH", env["PATH"]), root)
        elif instruction == "RUN":
            command = _move(arg, root)
            result = subprocess.run(["sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True)
            assert result.returncode == 0, f"RUN {command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return workdir


def _probe(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_image_steps_install_and_serve(tmp_path: Path) -> None:
    build, runtime = stages()
    python = Path(sys.base_prefix) / "bin" / "python3"  # not this venv's: a clean interpreter
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for name in ("PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
        if name in os.environ:
            env[name] = os.environ[name]
    _execute(build, tmp_path, dict(env))
    assert list((tmp_path / "dist").glob("sluice-*.whl"))
    assert not (tmp_path / "opt" / "sluice" / "bin" / "pip").exists()  # removed from the runtime venv

    run_env = dict(env)
    workdir = _execute(Stage(runtime.base, "runtime", [s for s in runtime.steps if s[0] != "RUN"]), tmp_path, run_env)
    port = free_port()
    run_env.update(SLUICE_HOST="127.0.0.1", SLUICE_PORT=str(port), SLUICE_AUDIT_HMAC_KEY="x" * 64)
    (entry,) = (json.loads(a) for a in runtime.args("ENTRYPOINT"))
    (cmd,) = (json.loads(a) for a in runtime.args("CMD"))
    argv = [_move(part, tmp_path) for part in entry + cmd]
    proc = subprocess.Popen(argv, cwd=workdir, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        status, body = 0, b""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, body = _probe(base + "/readyz")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200, (status, body, proc.stdout.read(4000) if proc.poll() is not None and proc.stdout else "")
        assert json.loads(body)["status"] == "ready"
        (check,) = runtime.args("HEALTHCHECK")
        probe = json.loads(check[check.index("CMD") + 3 :].strip())
        assert probe[0] == "python3"
        venv_python = tmp_path / "opt" / "sluice" / "bin" / "python3"
        assert subprocess.run([str(venv_python), *probe[1:]], env=run_env, timeout=10).returncode == 0
        for name in ("sluice.db", "audit.checkpoint.key"):  # relative and configured paths: the volume
            assert (tmp_path / "var" / "lib" / "sluice" / name).exists(), name
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert "Application shutdown complete" in output, output[-3000:]
