"""scripts/control-agent.sh and scripts/health-check.sh, run for real against a fake
kubectl (a shell shim on PATH that records its arguments and answers like a cluster)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "control-agent.sh"

FAKE_KUBECTL = r"""#!/bin/sh
echo "$*" >> "$KUBECTL_LOG"
case "$*" in
  "config current-context") [ -n "$NO_CONTEXT" ] && exit 1; echo test ;;
  *"config view"*) echo ;;
  *"get pods"*) printf 'agent-a\nagent-b\n' ;;
  *"exec agent-"*"head -n 1"*) cat "$FAKE_STATE" ;;
  *"exec agent-"*"cat /tmp/health/liveness"*)
    printf 'running\nclaimed=7\nprocessed=5\nfailed=1\nready=yes\n' ;;
  *"create configmap agent-control"*) echo "kind: ConfigMap" ;;
  *"apply -f -"*) cat >/dev/null ;;
  *"exec agent-"*"kill -USR1 1"*) echo paused > "$FAKE_STATE" ;;
  *"exec agent-"*"kill -USR2 1"*) echo running > "$FAKE_STATE" ;;
  *"exec -i agent-"*"ctl pause"*) cat > "$KUBECTL_STDIN"; echo paused > "$FAKE_STATE" ;;
  *"exec agent-"*"ctl pause"*) echo paused > "$FAKE_STATE" ;;
  *) ;;
esac
"""


@pytest.fixture
def fake(tmp_path: Path) -> dict[str, str]:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kubectl = bindir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(0o755)
    state = tmp_path / "state"
    state.write_text("running\n")
    return {
        "PATH": f"{bindir}:/usr/bin:/bin",
        "KUBECTL_LOG": str(tmp_path / "kubectl.log"),
        "KUBECTL_STDIN": str(tmp_path / "kubectl.stdin"),
        "FAKE_STATE": str(state),
        "WAIT_SECONDS": "10",
        "NAMESPACE": "production",
        "HOME": str(tmp_path),
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_pause_updates_the_configmap_signals_every_pod_and_verifies(fake: dict[str, str]) -> None:
    result = run(fake, "pause")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Pausing agent..." in result.stdout
    assert "ConfigMap updated to 'pause'" in result.stdout
    assert "✓ Agent successfully paused" in result.stdout
    assert "\x1b[" not in result.stdout, "no colour when not on a terminal"
    calls = Path(fake["KUBECTL_LOG"]).read_text()
    assert (
        "--namespace production create configmap agent-control --from-literal=state=pause" in calls
    )
    assert "--namespace production exec agent-a -- kill -USR1 1" in calls
    assert "--namespace production exec agent-b -- kill -USR1 1" in calls


def test_resume_then_waits_for_running(fake: dict[str, str]) -> None:
    Path(fake["FAKE_STATE"]).write_text("paused\n")
    result = run(fake, "resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ Agent successfully resumed" in result.stdout


def test_clear_errors_without_kubectl_or_context(fake: dict[str, str]) -> None:
    no_context = run({**fake, "NO_CONTEXT": "1"}, "status")
    assert no_context.returncode == 1
    assert "no current kubectl context" in no_context.stderr
    without = run({**fake, "PATH": "/nonexistent"}, "status")
    assert without.returncode != 0
    assert "kubectl" in without.stderr


def test_unknown_command_prints_usage(fake: dict[str, str]) -> None:
    result = run(fake, "explode")
    assert result.returncode == 2
    assert "pause|resume|status|restart" in result.stdout
    assert "set -euo pipefail" not in result.stdout, "the usage, not the script's first line"


def test_status_lists_each_pods_documents_on_a_line_grep_finds(fake: dict[str, str]) -> None:
    result = run(fake, "status")
    assert result.returncode == 0, result.stderr
    documents = [line for line in result.stdout.splitlines() if "documents" in line]
    assert documents == ["documents: claimed=7 processed=5 failed=1 "] * 2, "one per pod"


def run_health_check(health: Path) -> subprocess.CompletedProcess[str]:
    """scripts/health-check.sh inside the container, for the health files in ``health``."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "health-check.sh")],
        env={**os.environ, "HEALTH_DIR": str(health)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_health_check_script_reads_the_health_files(tmp_path: Path) -> None:
    health = tmp_path / "health"
    health.mkdir()
    missing = run_health_check(health)
    assert missing.returncode == 1
    assert "no liveness file" in missing.stdout
    (health / "liveness").write_text("paused\ntimestamp=now\n")
    fresh = run_health_check(health)
    assert fresh.returncode == 0, fresh.stdout
    assert "state=paused ready=no" in fresh.stdout


def test_health_check_script_fails_on_an_unhealthy_line(tmp_path: Path) -> None:
    health = tmp_path / "health"
    health.mkdir()
    (health / "liveness").write_text(
        "running\ntimestamp=now\nunhealthy=8 handler threads stuck past HANDLER_TIMEOUT\n"
    )
    result = run_health_check(health)
    assert result.returncode == 1
    assert "UNHEALTHY: 8 handler threads stuck" in result.stdout


def test_api_method_never_puts_the_token_on_a_command_line(fake: dict[str, str]) -> None:
    """Before: kubectl exec ... env PULLING_AGENT_TOKEN=<token> (visible in ps and in the
    API server's audit log)."""
    token = "ops-token-SECRET-0123456789"
    result = run({**fake, "METHOD": "api", "PULLING_AGENT_TOKEN": token}, "pause")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = Path(fake["KUBECTL_LOG"]).read_text()
    assert token not in calls
    assert "exec -i agent-a -- sh -c" in calls and "ctl pause" in calls
    assert Path(fake["KUBECTL_STDIN"]).read_text() == token + "\n", "passed on stdin"


def test_api_method_without_a_token_lets_ctl_read_it_in_the_pod(fake: dict[str, str]) -> None:
    result = run({**fake, "METHOD": "api"}, "pause")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = Path(fake["KUBECTL_LOG"]).read_text()
    assert "exec agent-a -- pulling-agent ctl pause --reason" in calls
    assert "PULLING_AGENT_TOKEN" not in calls
