"""Dashboards as code: valid PromQL, Grafana JSON that matches the definitions and the dashboard schema."""

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from monitor.dashboards import DASHBOARDS, grafana_dashboard

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "monitoring" / "grafana"

# The fields Grafana's dashboard kind requires (grafana/grafana docs/sources/developers/kinds/core/
# dashboard/schema-reference.md: spec.schemaVersion; a panel's `type`; GridPos h, w, x, y; a query's
# refId; a template variable's name and type), plus what a provisioned dashboard needs to be found
# and drawn: uid, title, panels with a Prometheus expression.
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["schemaVersion", "uid", "title", "panels"],
    "properties": {
        "schemaVersion": {"type": "integer", "minimum": 36},
        "uid": {"type": "string", "minLength": 8, "maxLength": 40},
        "title": {"type": "string", "minLength": 1},
        "editable": {"type": "boolean"},
        "graphTooltip": {"enum": [0, 1, 2]},
        "templating": {
            "type": "object",
            "properties": {"list": {"type": "array", "items": {"type": "object", "required": ["name", "type"]}}},
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type", "title", "gridPos", "targets"],
                "properties": {
                    "type": {"type": "string", "minLength": 1},
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "properties": {k: {"type": "integer", "minimum": 0} for k in "hwxy"},
                    },
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "object", "required": ["refId", "expr"]},
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_the_committed_grafana_dashboard_is_valid_and_current(uid: str) -> None:
    committed = json.loads((GRAFANA / f"{uid}.json").read_text())
    jsonschema.validate(committed, DASHBOARD_SCHEMA)
    assert committed == grafana_dashboard(DASHBOARDS[uid]), "stale: run `uv run python -m monitor.dashboards`"


def test_no_grafana_file_without_a_definition() -> None:
    assert {path.stem for path in GRAFANA.glob("*.json")} == set(DASHBOARDS)


def test_every_panel_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses each expression as a recording rule: a typo fails here, not on a chart.
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: `make setup` installs Debian's prometheus package")
    rules = [
        {"record": f"check:{uid}:{panel.id}", "expr": panel.expr}
        for uid, dashboard in DASHBOARDS.items()
        for panel in dashboard.panels
    ]
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(rules)} rules found" in result.stdout
