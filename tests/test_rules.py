"""Prometheus rules checked and unit-tested by the real promtool (Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parents[1] / "dashboards" / "rules"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: .ci/run installs Debian's prometheus package"
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=RULES)


def test_rules_are_valid():
    result = _promtool("check", "rules", "binarycop.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass():
    """Low compliance pages only with traffic; camera down; no ingester; counts stuck without Redis."""
    result = _promtool("test", "rules", "binarycop.rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_description_and_a_runbook_in_the_docs():
    """What on-call reads beside the summary; each runbook_url's anchor is a heading of docs/metrics-and-alerts.md."""
    docs = (RULES.parents[1] / "docs" / "metrics-and-alerts.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", docs, re.M)
    }
    alerts = [
        rule
        for group in yaml.safe_load((RULES / "binarycop.rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    assert alerts
    for alert in alerts:
        annotations = alert["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), alert["alert"]
        assert annotations["runbook_url"].split("#")[1] in anchors, alert["alert"]
