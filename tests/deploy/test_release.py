"""The release: a hash-locked dependency set that matches pyproject.toml, a CycloneDX SBOM of
exactly that set, and a wheel and sdist from `python -m build`, the wheel bit-for-bit
reproducible (docs/deployment.md, "Trusting a release")."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.dockerfile import ROOT

LOCKS = [ROOT / "requirements.lock", ROOT / "deploy" / "build-requirements.lock"]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes), from a pip requirements file with hashes."""
    out: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in lock.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _PIN.match(stripped)
        if match:
            current = canonicalize_name(match.group(1))
            out[current] = (match.group(2), [])
        elif stripped.startswith("--hash=sha256:") and current is not None:
            out[current][1].append(stripped.removeprefix("--hash=sha256:").rstrip(" \\"))
        else:
            raise AssertionError(f"{lock.name}: unexpected line {line!r} (every requirement must be pinned)")
    return out


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_locked_package_is_pinned_with_hashes(lock: Path) -> None:
    pins = _pins(lock)
    assert pins
    for name, (version, hashes) in pins.items():
        assert hashes, f"{name}=={version} has no hash"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name


def test_the_lock_pins_every_dependency_of_pyproject_within_its_range() -> None:
    pins = _pins(ROOT / "requirements.lock")
    for spec in _project()["dependencies"]:  # type: ignore[attr-defined]
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name][0], prereleases=True), f"{name}=={pins[name][0]} outside {req}"


def test_the_lock_is_what_make_lock_produces_today(tmp_path: Path) -> None:
    """Re-resolving with the lock's own pins as preferences changes nothing, unless pyproject.toml
    changed without `make lock`."""
    uv = shutil.which("uv") or str(ROOT / ".venv" / "bin" / "uv")
    if not Path(uv).exists():
        pytest.skip("uv is not installed (dev extras)")
    for lock, source in ((LOCKS[0], ROOT / "pyproject.toml"), (LOCKS[1], ROOT / "deploy" / "build-requirements.in")):
        copy = tmp_path / lock.name
        shutil.copy(lock, copy)
        argv = [uv, "pip", "compile", "-q", "--universal", "--generate-hashes", "--python-version", "3.11"]
        argv += ["--custom-compile-command", "make lock", str(source), "-o", str(copy)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
        if result.returncode != 0 and "network" in result.stderr.lower():
            pytest.skip(f"no package index: {result.stderr[-300:]}")
        assert result.returncode == 0, result.stderr
        strip = lambda text: [ln for ln in text.splitlines() if not ln.startswith("#")]  # noqa: E731
        assert strip(copy.read_text()) == strip(lock.read_text()), f"{lock.name} is stale: run `make lock`"


def test_sbom_lists_exactly_the_locked_set(tmp_path: Path) -> None:
    cyclonedx = shutil.which("cyclonedx-py") or str(ROOT / ".venv" / "bin" / "cyclonedx-py")
    if not Path(cyclonedx).exists():
        pytest.skip("cyclonedx-bom is not installed (dev extras)")
    out = tmp_path / "sbom.cdx.json"
    argv = [cyclonedx, "requirements", str(LOCKS[0]), "--pyproject", str(ROOT / "pyproject.toml")]
    argv += ["--output-reproducible", "--validate", "--of", "JSON", "-o", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    root = bom["metadata"]["component"]
    assert (root["name"], root["version"]) == ("sluice", _project()["version"])
    pins = _pins(LOCKS[0])
    listed = {canonicalize_name(c["name"]): c for c in bom["components"]}
    assert set(listed) == set(pins)
    for name, component in listed.items():
        assert component["version"] == pins[name][0]
        assert component["purl"].startswith(f"pkg:pypi/{name}@{pins[name][0]}")
        hashes = {h["content"] for ref in component.get("externalReferences", []) for h in ref.get("hashes", [])}
        assert hashes == set(pins[name][1]), name


def _build(out: Path) -> tuple[Path, Path]:
    env = dict(os.environ, SOURCE_DATE_EPOCH="1767225600")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (wheel,) = out.glob("sluice-*.whl")
    (sdist,) = out.glob("sluice-*.tar.gz")
    return wheel, sdist


@pytest.mark.slow
def test_wheel_and_sdist_build_and_the_wheel_is_reproducible(tmp_path: Path) -> None:
    wheel, sdist = _build(tmp_path / "a")  # the wheel is built from the sdist: the sdist is complete
    version = _project()["version"]
    assert wheel.name == f"sluice-{version}-py3-none-any.whl" and sdist.name == f"sluice-{version}.tar.gz"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"sluice-{version}.dist-info/METADATA").decode()
    assert {"sluice/py.typed", "sluice/pricing/prices.json", "sluice/storage/migrations/env.py"} <= names
    assert not any(n.startswith(("tests/", "bench/", "deploy/")) for n in names)
    required = {canonicalize_name(Requirement(line.split(":", 1)[1]).name) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line}  # fmt: skip
    assert required == {canonicalize_name(Requirement(d).name) for d in _project()["dependencies"]}  # type: ignore[attr-defined]
    again, _ = _build(tmp_path / "b")
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert digest(again) == digest(wheel), "the wheel is not reproducible with SOURCE_DATE_EPOCH"
