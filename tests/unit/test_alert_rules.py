"""The alert rules, checked and unit-tested by Prometheus' own tool (promtool, Debian's `prometheus`)."""

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.stack import StackSettings, write_stack

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `make setup` installs Debian's prometheus package (scripts/infra.sh install)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60)


def test_the_rule_unit_tests_pass() -> None:
    result = run("test", "rules", *map(str, sorted((RULES / "tests").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = {
        rule["alert"]
        for f in RULES.glob("*.yml")
        for g in yaml.safe_load(f.read_text())["groups"]
        for rule in g["rules"]
    }
    tested = set()
    for f in (RULES / "tests").glob("*.yml"):
        for case in yaml.safe_load(f.read_text())["tests"]:
            tested |= {check["alertname"] for check in case.get("alert_rule_test", []) if check.get("exp_alerts")}
    assert alerts == tested, f"alerts without a firing test: {alerts - tested}"


def test_the_generated_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    # The configuration scripts/infra.sh starts Prometheus with, shortened as the e2e tests do.
    settings = StackSettings(MONITORING_SCRAPE_INTERVAL="2s", MONITORING_SCRAPE_TIMEOUT="1s", MONITORING_ALERT_FOR="4s")
    write_stack(ROOT / "dapr.yaml", RULES, tmp_path, settings)
    result = run("check", "config", str(tmp_path / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 rules found" in result.stdout
    rules = yaml.safe_load((tmp_path / "prometheus" / "rules" / "platform.yml").read_text())
    assert {rule["for"] for group in rules["groups"] for rule in group["rules"]} == {"4s"}
