"""The Helm chart (deploy/helm/pulling-agent), checked offline like the Kustomize overlays:
`helm lint --strict` with each values file, a typo in a values file refused by the schema,
the render validated by kubernetes-validate and checkov, and parity: for staging and
production, Helm renders exactly the objects the Kustomize overlay renders (so the probes,
env names and security settings the manifest tests tie to the code hold for both)."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_manifests import ROOT, checkov, documents, tool

CHART = ROOT / "deploy" / "helm" / "pulling-agent"
VALUES = {
    "default": None,
    "staging": "values-staging.yaml",
    "production": "values-production.yaml",
    "example-full": "values-example-full.yaml",
}
NAMESPACES = {
    "default": "default",
    "staging": "pulling-agent-staging",
    "production": "pulling-agent",
    "example-full": "pulling-agent",
}
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("helm"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@cache
def template(name: str) -> str:
    values = VALUES[name]
    extra = ["-f", str(CHART / values)] if values else []
    result = helm("template", "pulling-agent", str(CHART), "--namespace", NAMESPACES[name], *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def objects(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(template(name)) if d]


@pytest.mark.parametrize("name", list(VALUES))
def test_helm_lint_strict(name: str) -> None:
    values = VALUES[name]
    result = helm("lint", "--strict", str(CHART), *(["-f", str(CHART / values)] if values else []))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "typo",
    ["imgae: {}\n", "replicaCount: two\n", "settings: {log_level: x}\n", "image: {tagg: x}\n"],
)
def test_a_typo_in_a_values_file_fails(tmp_path: Path, typo: str) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(typo)
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode != 0, f"{typo!r} was accepted"


@pytest.mark.parametrize("name", list(VALUES))
@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_the_render_validates_strictly(name: str, version: str) -> None:
    for doc in objects(name):
        if doc["kind"] not in CRD_KINDS:  # no bundled schema for CRDs
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("name", ["staging", "production", "example-full"])
def test_checkov_passes_on_the_render(name: str, tmp_path: Path) -> None:
    result = checkov(template(name), f"helm-{name}", tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def _by_identity(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.mark.parametrize("name", ["staging", "production", "example-full"])
def test_helm_and_kustomize_render_the_same_objects(name: str) -> None:
    helm_objects = _by_identity(objects(name))
    kustomize_objects = _by_identity(documents(name))
    assert sorted(helm_objects) == sorted(kustomize_objects)
    for identity, expected in kustomize_objects.items():
        assert helm_objects[identity] == expected, f"{identity} differs between Helm and Kustomize"


def test_the_chart_never_creates_a_secret() -> None:
    for name in VALUES:
        assert all(d["kind"] != "Secret" for d in objects(name))
