"""The deploy kit, checked offline: Kustomize renders, Kubernetes schemas, checkov,
yamllint, hadolint, shellcheck, and the manifests agree with the code.

A missing tool skips its test with the install hint on a developer's machine; in CI
(``CI`` set) it fails instead, since CI installs them (``make tools``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from pulling_agent.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["staging", "production", "example-full"]
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}
HINTS = {
    "kubectl": "install kubectl (https://kubernetes.io/docs/tasks/tools/)",
    "checkov": "make tools",
    "yamllint": "make tools",
    "hadolint": "make tools",
    "shellcheck": "make tools",
    "helm": "make tools",
    "promtool": "make promtool (Debian's prometheus package)",
}


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(ROOT / ".venv-tools" / "bin"))
    if found is None:
        message = f"{name} is not installed: {HINTS[name]}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install it)")
        pytest.skip(message)
    return found


@cache
def rendered(overlay: str) -> str:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def documents(overlay: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered(overlay)) if d]


def find(overlay: str, kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in documents(overlay) if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.latest_version()])
def test_overlays_render_and_validate_strictly(overlay: str, version: str) -> None:
    unvalidated = set()
    for doc in documents(overlay):
        if doc["kind"] in CRD_KINDS:
            unvalidated.add(doc["kind"])  # no bundled schema for CRDs
            continue
        kubernetes_validate.validate(doc, version, strict=True)
    if overlay != "example-full":
        assert unvalidated == set(), "base overlays must need no CRD"


def checkov(manifests: str, name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """checkov on rendered manifests, with the project's justified skips."""
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(manifests)
    return subprocess.run(
        [
            tool("checkov"),
            "--config-file",
            str(ROOT / ".checkov.yaml"),
            "--skip-download",
            "-f",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_with_only_the_justified_skips(overlay: str, tmp_path: Path) -> None:
    result = checkov(rendered(overlay), overlay, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout


def test_yamllint() -> None:
    result = subprocess.run(
        [
            tool("yamllint"),
            "--strict",
            "-c",
            str(ROOT / ".yamllint.yaml"),
            "deploy",
            ".github",
            ".yamllint.yaml",
            ".checkov.yaml",
            "docker-compose.yml",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint() -> None:
    result = subprocess.run(
        [tool("hadolint"), "Dockerfile"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck() -> None:
    scripts = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh"))
    assert scripts
    result = subprocess.run(
        [tool("shellcheck"), *scripts], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _container(overlay: str) -> dict[str, Any]:
    deployment = find(overlay, "Deployment", "pulling-agent")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


@pytest.mark.parametrize("overlay", ["staging", "production"])
def test_env_names_are_the_ones_the_code_reads(overlay: str) -> None:
    known = {name.upper() for name in Settings.model_fields}
    settings = find(overlay, "ConfigMap", "pulling-agent-settings")["data"]
    env = {e["name"] for e in _container(overlay)["env"]}
    assert set(settings) | env <= known, (set(settings) | env) - known
    assert {"MONGODB_URI", "MONGODB_DATABASE", "MONGODB_COLLECTION", "HANDLER"} <= (
        set(settings) | env
    )


def _health_help() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pulling_agent", "health", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    return result.stdout


@pytest.mark.parametrize("overlay", ["staging", "production"])
def test_probes_mounts_and_grace_period_match_the_code(overlay: str) -> None:
    container = _container(overlay)
    pod = find(overlay, "Deployment", "pulling-agent")["spec"]["template"]["spec"]
    liveness = container["livenessProbe"]["exec"]["command"]
    readiness = container["readinessProbe"]["exec"]["command"]
    assert liveness[:2] == readiness[:2] == ["pulling-agent", "health"]
    assert "--ready" in readiness
    assert "--ready" not in liveness
    options = _health_help()
    for flag in {f for f in liveness + readiness if f.startswith("--")}:
        assert flag in options, f"{flag} is not an option of `pulling-agent health`"
    env = {e["name"]: e for e in container["env"]}
    assert env["AGENT_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert env["HEALTH_DIR"]["value"] in mounts
    control_dir = str(Path(env["CONTROL_FILE"]["value"]).parent)
    assert "subPath" not in mounts[control_dir], "kubelet never updates subPath mounts"
    volumes = {v["name"]: v for v in pod["volumes"]}
    control = volumes[mounts[control_dir]["name"]]["configMap"]
    assert (control["name"], control["optional"]) == ("agent-control", True)
    settings = find(overlay, "ConfigMap", "pulling-agent-settings")["data"]
    assert pod["terminationGracePeriodSeconds"] > float(settings["SHUTDOWN_TIMEOUT"])
    assert container["ports"][0]["containerPort"] == int(settings["API_PORT"])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    service = find(overlay, "Service", "pulling-agent")
    assert service["spec"]["publishNotReadyAddresses"] is True


def test_overlays_differ_where_they_should() -> None:
    staging, production = _container("staging"), _container("production")
    assert staging["image"] != production["image"]
    assert staging["resources"] != production["resources"]
    replicas = [
        find(o, "Deployment", "pulling-agent")["spec"]["replicas"]
        for o in ("staging", "production")
    ]
    assert replicas[0] < replicas[1]
    levels = [
        find(o, "ConfigMap", "pulling-agent-settings")["data"]["LOG_LEVEL"]
        for o in ("staging", "production")
    ]
    assert levels == ["DEBUG", "INFO"]


def test_control_jobs_rbac_is_least_privilege() -> None:
    role = find("example-full", "Role", "pulling-agent-control")
    [rule] = role["rules"]
    assert rule["resources"] == ["configmaps"]
    assert rule["resourceNames"] == ["agent-control"]
    assert set(rule["verbs"]) <= {"get", "patch", "update"}


def test_the_secret_template_is_not_applied() -> None:
    for overlay in OVERLAYS:
        assert all(d["kind"] != "Secret" for d in documents(overlay))


def test_the_grace_period_covers_the_shutdown_bound() -> None:
    """The process exits within SHUTDOWN_TIMEOUT + EXIT_MARGIN (8 s); the pod's grace
    period keeps 10 s above SHUTDOWN_TIMEOUT for it."""
    from pulling_agent.runtime.agent import EXIT_MARGIN

    base = ROOT / "deploy" / "k8s" / "base"
    settings = yaml.safe_load((base / "settings.yaml").read_text())
    deployment = yaml.safe_load((base / "deployment.yaml").read_text())
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    shutdown_timeout = float(settings["data"]["SHUTDOWN_TIMEOUT"])
    assert EXIT_MARGIN <= 10
    assert grace >= shutdown_timeout + 10


def _labels_match(selector: str, labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, _, v in (p.partition("=") for p in selector.split(",")))


@pytest.mark.parametrize("overlay", ["staging", "production"])
def test_the_selectors_in_scripts_and_make_targets_find_the_pods(overlay: str) -> None:
    """Before: make k8s-status selected app.kubernetes.io/name=pulling-agent, which the
    pods did not carry."""
    makefile = (ROOT / "Makefile").read_text()
    make_selector = makefile.split("get deployment,pods,service -l ", 1)[1].split()[0]
    script = (ROOT / "scripts" / "control-agent.sh").read_text()
    script_selector = script.split('SELECTOR="${SELECTOR:-', 1)[1].split("}", 1)[0]
    deployment = find(overlay, "Deployment", "pulling-agent")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = find(overlay, "Service", "pulling-agent")
    for selector in (make_selector, script_selector):
        assert _labels_match(selector, pod_labels), (selector, pod_labels)
        assert _labels_match(selector, deployment["metadata"]["labels"]), selector
    assert _labels_match(make_selector, service["metadata"]["labels"])
    for doc in documents(overlay):
        labels = doc["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "pulling-agent", doc["kind"]


def test_mongodb_egress_can_be_narrowed() -> None:
    narrowed = find("example-full", "NetworkPolicy", "pulling-agent")
    mongodb = [rule for rule in narrowed["spec"]["egress"] if rule["ports"][0]["port"] == 27017]
    assert mongodb[0]["to"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]
    default = find("production", "NetworkPolicy", "pulling-agent")
    assert all("to" not in rule for rule in default["spec"]["egress"])


def test_the_manifests_work_collection_is_not_one_of_the_agents_own() -> None:
    """Before: MONGODB_COLLECTION=jobs, the scheduler's default JOBS_COLLECTION."""
    from pulling_agent.config import load_settings

    settings = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "settings.yaml").read_text())
    work = settings["data"]["MONGODB_COLLECTION"]
    load_settings(mongodb_uri="mongodb://h/", mongodb_database="d", mongodb_collection=work)
    keda = (ROOT / "deploy" / "k8s" / "components" / "keda" / "scaledobject.yaml").read_text()
    assert f"collection: {work}" in keda


def test_the_guides_cronjob_commands_name_the_shipped_cronjobs() -> None:
    """Seed 002's Method 5 commands, as the guide gives them, act on CronJobs that exist."""
    shipped = {
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(
            (ROOT / "deploy/k8s/components/control-jobs/cronjobs.yaml").read_text()
        )
        if doc and doc.get("kind") == "CronJob"
    }
    lines = (ROOT / "docs/PAUSE-UNPAUSE-GUIDE.md").read_text().splitlines()
    commands = [line.split("#", 1)[0] for line in lines if line.startswith("kubectl")]
    named = {n for line in commands for n in re.findall(r"cronjob[/ ]([a-z0-9-]+)", line)}
    assert named and named <= shipped, named - shipped
