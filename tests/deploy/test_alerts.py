"""The alerts are tested, not only checked: ``promtool test rules`` (Debian's prometheus
package) runs deploy/k8s/components/monitoring/tests/alerts-test.yaml against the rules of
the PrometheusRule. (That the rules and the dashboard read the metrics a running agent
exports: tests/integration/test_metric_names.py.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.test_manifests import ROOT, tool

MONITORING = ROOT / "deploy/k8s/components/monitoring"


def rules() -> dict[str, Any]:
    resource = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return {"groups": resource["spec"]["groups"]}


def test_every_alert_passes_its_promtool_unit_tests(tmp_path: Path) -> None:
    promtool = tool("promtool")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules()))
    shutil.copy(MONITORING / "tests/alerts-test.yaml", tmp_path / "alerts-test.yaml")
    for command in (("check", "rules", "rules.yaml"), ("test", "rules", "alerts-test.yaml")):
        ran = subprocess.run(
            [promtool, *command], capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr


def test_every_alert_has_a_test() -> None:
    alerts = {r["alert"] for g in rules()["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((MONITORING / "tests/alerts-test.yaml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])}
    assert alerts == tested
