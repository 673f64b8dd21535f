"""The Helm chart: `helm lint --strict`, `helm template` validated against the Kubernetes JSON
schemas (kubernetes-validate's bundled copies, strict: unknown fields fail) for the oldest and a
recent supported Kubernetes, and the promises docs/deployment.md makes about what it renders.

helm comes from `deploy/helm/fetch-helm.sh` (`make helm`), into .tools/bin."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.dockerfile import ROOT

CHART = ROOT / "deploy" / "helm" / "sluice"
CI_VALUES = CHART / "ci" / "test-values.yaml"
KUBERNETES = ["1.25.0", "1.33.0"]  # the chart's kubeVersion floor, and a current release


def _helm() -> str:
    found = shutil.which("helm") or (str(ROOT / ".tools/bin/helm") if (ROOT / ".tools/bin/helm").exists() else None)
    if found is None:
        pytest.skip("helm is not installed: run `make helm` (deploy/helm/fetch-helm.sh)")
    return found


def _render(*sets: str, values: Path | None = CI_VALUES) -> subprocess.CompletedProcess[str]:
    argv = [_helm(), "template", "sl", str(CHART), "--namespace", "gw"]
    if values is not None:
        argv += ["-f", str(values)]
    for item in sets:
        argv += ["--set", item]
    return subprocess.run(argv, capture_output=True, text=True)


def _docs(*sets: str) -> list[dict[str, Any]]:
    result = _render(*sets)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def _one(docs: list[dict[str, Any]], kind: str, name: str = "sl-sluice") -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_helm_lint_strict() -> None:
    result = subprocess.run(
        [_helm(), "lint", "--strict", str(CHART), "-f", str(CI_VALUES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES)
def test_rendered_manifests_match_the_kubernetes_schemas(version: str) -> None:
    docs = _docs()
    assert {d["kind"] for d in docs} == {
        "Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount",
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
    }  # fmt: skip
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_can_fail() -> None:
    deployment = _one(_docs(), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pathh"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES[-1], strict=True)


def test_probes_security_and_drain() -> None:
    pod = _one(_docs(), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["timeoutSeconds"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["automountServiceAccountToken"] is False
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert pod["terminationGracePeriodSeconds"] == 30 + 5 + 10  # drain + preStop + margin
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/etc/sluice"]["readOnly"] is True and {"/var/lib/sluice", "/tmp"} <= set(mounts)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SLUICE_COUNTERS"] == "redis"
    assert "FORWARDED_ALLOW_IPS" not in env  # trust no proxy unless told
    trusting = _one(_docs("trustForwardedFrom=10.42.0.0/16"), "Deployment")["spec"]["template"]["spec"]
    assert {"name": "FORWARDED_ALLOW_IPS", "value": "10.42.0.0/16"} in trusting["containers"][0]["env"]
    assert container["envFrom"] == [{"secretRef": {"name": "sl-sluice"}}]
    longer = _one(_docs("drainGracePeriodSeconds=120"), "Deployment")["spec"]["template"]["spec"]
    assert longer["terminationGracePeriodSeconds"] == 135
    workers = _one(_docs("extraArgs={--workers=4}"), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert workers["args"] == ["serve", "--config", "/etc/sluice/sluice.yaml", "--workers=4"]


def test_autoscaler_and_disruption_budget() -> None:
    docs = _docs()
    hpa = _one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sl-sluice"}
    assert hpa["spec"]["minReplicas"] == 2
    assert "replicas" not in _one(docs, "Deployment")["spec"]  # the HPA owns the count
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == _one(docs, "Deployment")["spec"]["selector"]["matchLabels"]


def test_only_the_gateway_reaches_the_providers() -> None:
    docs = _docs()
    gateway = _one(docs, "NetworkPolicy")
    assert gateway["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert gateway["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "sluice"
    https = [rule for rule in gateway["spec"]["egress"] if {"port": 443, "protocol": "TCP"} in rule.get("ports", [])]
    (providers,) = https
    (block,) = providers["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in block["ipBlock"]["except"]
    lock = _one(docs, "NetworkPolicy", "sl-sluice-egress-lock")
    assert lock["metadata"]["namespace"] == "agents" and lock["spec"]["podSelector"] == {}
    allowed = [peer for rule in lock["spec"]["egress"] for peer in rule["to"]]
    assert all("ipBlock" not in peer for peer in allowed)  # nothing outside the cluster
    (to_gateway,) = [r for r in lock["spec"]["egress"] if r["ports"] == [{"port": 8080, "protocol": "TCP"}]]
    assert to_gateway["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "gw"}


def test_secret_and_config() -> None:
    docs = _docs()
    secret = _one(docs, "Secret")["stringData"]
    assert set(secret) == {"SLUICE_STORE_URL", "SLUICE_REDIS_URL", "SLUICE_AUDIT_HMAC_KEY", "ANTHROPIC_API_KEY"}
    config = _one(docs, "ConfigMap")["data"]["sluice.yaml"]
    assert config.strip() == (ROOT / "deploy" / "sluice.yaml").read_text().strip()
    assert "placeholder" not in config  # secrets stay in the Secret
    custom = _one(_docs("config.server.port=8080", "config.store.url=env.SLUICE_STORE_URL"), "ConfigMap")
    assert yaml.safe_load(custom["data"]["sluice.yaml"]) == {
        "server": {"port": 8080},
        "store": {"url": "env.SLUICE_STORE_URL"},
    }


def test_chart_copy_of_the_bundled_config_is_the_same_file() -> None:
    # helm cannot read outside the chart: the copy must not drift from the image's config.
    assert (CHART / "files" / "sluice.yaml").read_bytes() == (ROOT / "deploy" / "sluice.yaml").read_bytes()


def test_existing_secret_replaces_the_charts() -> None:
    result = _render("existingSecret=sluice-vault", values=None)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert "Secret" not in {d["kind"] for d in docs}
    container = _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "sluice-vault"}}]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["counters.backend=local"], "need counters.backend: redis"),
        (["store.url=sqlite+aiosqlite:///x.db"], "need a shared store"),
        (["audit.hmacKey="], "audit.hmacKey is required"),
        (["counters.backend=memcached"], "value must be one of"),
        (["networkPolicy.providerPorts=null"], "networkPolicy.providerPorts must not be empty"),
        (["networkPolicy.providerEgress=null"], "networkPolicy.providerEgress must not be empty"),
    ],
)
def test_unsafe_values_are_refused(sets: list[str], message: str) -> None:
    result = _render(*sets)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_one_replica_may_run_on_sqlite_and_local_counters() -> None:
    docs = _docs(
        "replicaCount=1", "autoscaling.enabled=false", "counters.backend=local", "store.url=sqlite+aiosqlite:///x.db"
    )
    assert _one(docs, "Deployment")["spec"]["replicas"] == 1
    gateway = _one(docs, "NetworkPolicy")
    assert not [r for r in gateway["spec"]["egress"] if {"port": 6379, "protocol": "TCP"} in r.get("ports", [])]
