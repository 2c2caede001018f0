"""Every Kubernetes manifest Sandpit ships or creates, validated against the
real Kubernetes OpenAPI schemas (the `kubernetes-validate` package, strict:
unknown fields are errors) for Kubernetes 1.33 (the oldest supported) and the
newest schemas the package bundles.

- The Helm chart (deploy/helm/sandpit) is rendered by Helm's own engine
  (`helm-python-sdk` wraps Helm v4's Go library; `helm` itself is not
  packaged for Debian 12), with the default values and with every optional
  branch turned on.
- The objects the Kubernetes runtime creates for a sandbox come from
  `sandpit kubernetes render`, the same builders the runtime calls.

No cluster is involved: this proves the manifests are well-formed API
objects, not that a cluster runs them (scripts/e2e-kubernetes does that).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import sandpit_binary

kubernetes_validate = pytest.importorskip("kubernetes_validate")
from kubernetes_validate.utils import latest_version, validate  # noqa: E402

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "sandpit"
VERSIONS = ["1.33.0", latest_version()]


def check(objects: list[dict], what: str) -> None:
    assert objects, f"{what}: nothing to validate"
    for obj in objects:
        for version in VERSIONS:
            try:
                validate(obj, version, strict=True)
            except Exception as err:  # ValidationError carries the path
                name = obj.get("metadata", {}).get("name")
                pytest.fail(f"{what}: {obj.get('kind')}/{name} invalid for {version}: {err}")


def render_chart(values: dict) -> dict[str, list[dict]]:
    helm = pytest.importorskip("helm_python")
    chart = helm.Chart.load(str(CHART))
    rendered = chart.render(values=values, name="demo", namespace="sandpit", is_install=True)
    out = {}
    for path, text in rendered.items():
        docs = [d for d in yaml.safe_load_all(text) if d] if path.endswith(".yaml") else []
        if docs:
            out[path] = docs
    return out


def test_the_validator_rejects_what_a_cluster_would():
    """Control: strict validation fails on an unknown field and a wrong type."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "a", "image": "i"}]}}
    validate(pod, "1.33.0", strict=True)
    with pytest.raises(Exception):
        validate({**pod, "spec": {**pod["spec"], "automountToken": False}}, "1.33.0", strict=True)
    with pytest.raises(Exception):
        validate({**pod, "spec": {"containers": "a"}}, "1.33.0", strict=True)


def test_helm_chart_defaults_are_valid():
    rendered = render_chart({"database": {"url": "postgres://u:p@db:5432/sandpit"}})
    kinds = sorted(o["kind"] for objs in rendered.values() for o in objs)
    assert kinds == ["Deployment", "Ingress", "Role", "RoleBinding", "Secret", "Secret",
                     "Service", "ServiceAccount"], kinds
    for path, objs in rendered.items():
        check(objs, path)
    role = next(o for objs in rendered.values() for o in objs if o["kind"] == "Role")
    resources = sorted(r for rule in role["rules"] for r in rule["resources"])
    assert resources == ["networkpolicies", "persistentvolumeclaims", "pods", "secrets"]
    ingress = next(o for objs in rendered.values() for o in objs if o["kind"] == "Ingress")
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert hosts == ["sandpit.example.com", "*.sandboxes.example.com"]
    deployment = next(o for objs in rendered.values() for o in objs if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--runtime=kubernetes" in args


def test_helm_chart_every_option_is_valid():
    rendered = render_chart({
        "replicaCount": 5,
        "database": {"existingSecret": "pg"},
        "sharedSecret": {"existingSecret": "shared"},
        "adminKey": {"existingSecret": "admin"},
        "kubernetes": {"storageClass": "fast", "gvisorRuntimeClass": ""},
        "ingress": {"className": "nginx", "tlsSecret": "wildcard",
                    "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600"}},
        "nodeSelector": {"pool": "sandpit"},
        "tolerations": [{"key": "sandpit", "operator": "Exists", "effect": "NoSchedule"}],
    })
    kinds = sorted(o["kind"] for objs in rendered.values() for o in objs)
    assert "Secret" not in kinds, "existing secrets are used, none made"
    for path, objs in rendered.items():
        check(objs, path)


def test_helm_chart_without_a_database_fails_clearly():
    helm = pytest.importorskip("helm_python")
    with pytest.raises(Exception, match="database.url"):
        helm.Chart.load(str(CHART)).render(values={}, name="demo", namespace="sandpit")


def test_runtime_manifests_are_valid(tmp_path):
    out = tmp_path / "manifests"
    subprocess.run([sandpit_binary(), "kubernetes", "render", "--out", str(out)], check=True,
                   timeout=60)
    files = sorted(out.glob("*.json"))
    seen = set()
    for path in files:
        objs = json.loads(path.read_text())
        for obj in objs:
            seen.add(obj["kind"])
        check(objs, path.name)
    assert seen == {"Pod", "Secret", "NetworkPolicy", "PersistentVolumeClaim"}, seen
    pods = [o for p in files for o in json.loads(p.read_text()) if o["kind"] == "Pod"]
    assert any(p["spec"].get("runtimeClassName") == "gvisor" for p in pods)
    assert all(p["spec"]["automountServiceAccountToken"] is False for p in pods)
