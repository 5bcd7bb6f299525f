"""The GitHub Actions workflow, checked by actionlint (built from its Go module by scripts/build-k8s.sh)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from kube import BIN

from harness import ROOT

ACTIONLINT = BIN / "actionlint"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    if not ACTIONLINT.is_file():
        pytest.skip(f"{ACTIONLINT} is not built: run `make k8s` (scripts/build-k8s.sh)")
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", *map(str, paths)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_workflows_pass_actionlint() -> None:
    assert WORKFLOWS, "no workflow in .github/workflows"
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_runs_make_test_and_pushes_images_only_on_tags() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yaml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    assert any(".ci/run" in step.get("run", "") for step in steps)
    images = workflow["jobs"]["images"]
    assert images["if"] == "startsWith(github.ref, 'refs/tags/v')" and images["needs"] == "test"
    assert any(step.get("with", {}).get("push") is True for step in images["steps"])


def test_actionlint_finds_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: an unknown key and a misspelt expression are reported."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "on: push\njobs:\n  test:\n    runs-on: ubuntu-24.04\n    timeout-minute: 5\n"
        "    steps:\n      - run: echo ${{ github.shaa }}\n"
    )
    result = actionlint(broken)
    assert result.returncode == 1
    assert 'unexpected key "timeout-minute"' in result.stdout
    assert '"shaa"' in result.stdout
