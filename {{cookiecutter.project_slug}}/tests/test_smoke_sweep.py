"""One quick smoke sweep: the first two configurations of your parameters file through `mlops run --local`
(params -> data -> model, as the cluster runs them). The `mlops` machinery itself is tested in the template."""

import json
import shutil
import subprocess
import sys

from conftest import ROOT
from mlops import params


def test_the_first_two_configurations_complete_with_metrics(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, ignore=shutil.ignore_patterns("runs", ".venv", ".git", "__pycache__", "*.egg-info"))
    first = params.expand(params.validate(ROOT / "params" / "parameters.json"))[:2]
    (project / "params" / "parameters.json").write_text(json.dumps({"configurations": [c.parameters for c in first]}))
    result = subprocess.run(
        [sys.executable, "-m", "mlops", "run", "--local", "--jobs", "2", "--run-id", "smoke"],
        cwd=project, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((project / "runs" / "smoke" / "results" / "summary.json").read_text())
    assert summary["counts"]["completed"] == len(first) == len(summary["configurations"])
    assert all(c["metrics"] and not c["problems"] for c in summary["configurations"]), summary["configurations"]
