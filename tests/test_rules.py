"""Prometheus rules checked and unit-tested by the real promtool (Debian's prometheus package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
