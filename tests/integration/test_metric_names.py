"""The alerts and the dashboard read the metrics a running agent exports: every
``pulling_agent_*`` name in the PrometheusRule and the Grafana dashboard is in /metrics."""

from __future__ import annotations

import json
import re

import httpx

from tests.deploy.test_alerts import MONITORING

METRIC = re.compile(r"\bpulling_agent_[a-z_]+")


async def test_rules_and_dashboard_read_the_metrics_the_agent_exports(
    api: httpx.AsyncClient,
) -> None:
    text = (await api.get("/metrics")).text
    exported = set(METRIC.findall(text))
    # a histogram's series appear once observed: its family's TYPE line stands for them
    for family in re.findall(r"^# TYPE (pulling_agent_[a-z_]+) histogram$", text, re.M):
        exported |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
    assert "pulling_agent_processed_total" in exported
    read = set(METRIC.findall((MONITORING / "prometheusrule.yaml").read_text()))
    dashboard = json.loads((MONITORING / "pulling-agent-dashboard.json").read_text())
    read |= set(METRIC.findall(json.dumps(dashboard)))
    assert read, "the rules and the dashboard read pulling_agent_* metrics"
    assert read <= exported, f"read but never exported: {sorted(read - exported)}"
